"""Writing and safely extracting the flat ``.tar.gz`` archive of a package.

The archive is hostile until its signature is checked, and the signature is inside it. So the
loader reads the manifest and the signature first, into memory (:func:`read_members`), checks
them, and only then extracts, and only the files the signed manifest lists at the sizes it
gives (:func:`extract_archive` with ``listed``). Every pass holds the archive to the same
rules: the standard ``tarfile`` extraction filter ``"data"`` (PEP 706) does the path and
file-type sanitising; on top of it a package archive must be **flat**: only regular files, no
folders, no links, no devices or FIFOs, no absolute paths, no ``..``, no name twice, at most
``max_members`` members. Sizes are capped twice: the sizes the member headers declare must add
up to at most ``max_bytes``, and the decompressed stream itself is counted while it is read, so
a header that lies (or a huge extended header) cannot get past the cap.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import tempfile
import time
import zlib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from edgefleet.errors import PackageError, TamperedPackage, UnsafeArchive
from edgefleet.package.files import open_regular

#: Default cap on the total uncompressed size of a package, in bytes (the agent's default for
#: ``edgefleet_max_package_bytes``).
DEFAULT_MAX_ARCHIVE_BYTES = 4 << 30

#: Default cap on the number of members of a package archive.
DEFAULT_MAX_MEMBERS = 1024

#: Bytes of tar structure allowed per member beyond its content: an extended (PAX) header block,
#: its data block, the member's header block and the padding of its content.
_OVERHEAD_PER_MEMBER = 4 * tarfile.BLOCKSIZE

_REFUSE_HINT = ("a model package is a flat archive of regular files; rebuild it with "
                "`edgefleet package build`")


class _CountingReader(io.BufferedIOBase):
    """Reads the decompressed tar stream and refuses to go past ``limit`` bytes in total."""

    def __init__(self, source: io.BufferedIOBase, limit: int, archive: Path) -> None:
        super().__init__()
        self._source = source
        self._limit = limit
        self._archive = archive
        self.count = 0
        self.member = "(none yet)"

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            size = self._limit - self.count + 1
        data = self._source.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise UnsafeArchive(
                f"{self._archive.name} expands to more than {self._limit} bytes (files plus tar "
                f"headers), past the size cap; the last member read was {self.member!r}. Raise "
                f"edgefleet_max_package_bytes if the package is genuine")
        return data


def _problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` cannot be part of a flat package, or None."""
    name = member.name
    if name.startswith("/"):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "climbs out of the package folder with '..'"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.isdir():
        return "is a folder"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if not member.isreg():
        return "is not a regular file"
    if "/" in name:
        return "is inside a folder"
    if name in ("", "."):
        return "has no file name"
    return None


def _checked_members(tar: tarfile.TarFile, reader: _CountingReader, archive: Path, *,
                     max_bytes: int, max_members: int) -> Iterator[tarfile.TarInfo]:
    names: set[str] = set()
    declared = 0
    for count, member in enumerate(tar, start=1):
        reader.member = member.name
        if count > max_members:
            raise UnsafeArchive(
                f"{archive.name} has more than {max_members} members (refused at "
                f"{member.name!r}); {_REFUSE_HINT}")
        problem = _problem(member)
        if problem:
            raise UnsafeArchive(f"archive member {member.name!r} {problem}; {_REFUSE_HINT}")
        if member.name in names:
            raise UnsafeArchive(
                f"archive member {member.name!r} appears twice; {_REFUSE_HINT}")
        names.add(member.name)
        declared += member.size
        if declared > max_bytes:
            raise UnsafeArchive(
                f"archive member {member.name!r} ({member.size} bytes) takes {archive.name} past "
                f"the size cap of {max_bytes} bytes; raise edgefleet_max_package_bytes if the "
                f"package is genuine")
        yield member


def extract_archive(archive: Path, directory: Path, *,
                    max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
                    max_members: int = DEFAULT_MAX_MEMBERS,
                    listed: Mapping[str, int] | None = None,
                    label: str | None = None) -> None:
    """Extract the flat package archive ``archive`` (gzip-compressed tar) into ``directory``.

    ``directory`` must exist and should be empty and private to the caller; on an error it may
    hold part of the archive, so extract into a temporary folder and rename it on success
    (as :func:`edgefleet.package.open_package` does). The whole gzip stream is read, so a
    truncated or corrupt file is detected even after the last member.

    Args:
        archive: path of the ``.tar.gz`` file.
        directory: where the members go, under their own names.
        max_bytes: cap on the total size of the members' content, in bytes.
        max_members: cap on the number of members.
        listed: when given, the only members to extract, by name, with the size in bytes each
            must have (from a manifest whose signature was checked before extraction: see
            :func:`read_members`); a member not listed, or of another size, is refused before
            any of its bytes are written.
        label: how messages name the package (default: the archive's file name).

    Raises:
        UnsafeArchive: a member is not a plain file name of a regular file (absolute path,
            ``..``, folder, symbolic or hard link, device, FIFO, duplicate), there are too many
            members, or the content exceeds ``max_bytes``; the message names the member.
        TamperedPackage: with ``listed``, a member is not listed or has another size.
        PackageError: the file is not a regular file (a FIFO, device, ...), is not gzip, is
            truncated or corrupt, or is not a tar archive.
    """
    with _stream(archive, max_bytes=max_bytes, max_members=max_members) as (tar, reader,
                                                                            members):
        if listed is not None:
            members = _only_listed(members, listed, label or archive.name)
        tar.extractall(directory, filter="data", members=members)
        # Read the rest: the gzip trailer's CRC and length check everything before it.
        while reader.read(1 << 16):
            pass


@contextlib.contextmanager
def _stream(archive: Path, *, max_bytes: int, max_members: int) -> Iterator[
        tuple[tarfile.TarFile, _CountingReader, Iterator[tarfile.TarInfo]]]:
    """Open ``archive`` as a tar stream: (the tar file, the counting reader under it, its
    members held to the rules); errors of reading it become PackageError or UnsafeArchive."""
    limit = max_bytes + max_members * _OVERHEAD_PER_MEMBER + tarfile.RECORDSIZE
    try:
        with (open_regular(archive, label=archive.name) as raw,
              gzip.GzipFile(fileobj=raw, mode="rb") as unzipped):
            reader = _CountingReader(unzipped, limit, archive)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                yield tar, reader, _checked_members(tar, reader, archive, max_bytes=max_bytes,
                                                    max_members=max_members)
    except tarfile.FilterError as error:
        raise UnsafeArchive(f"archive member refused: {error}; {_REFUSE_HINT}") from None
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise PackageError(
            f"{archive.name} is not a readable .tar.gz package (it is truncated or corrupt: "
            f"{error}); download or copy it again") from None


def _only_listed(members: Iterator[tarfile.TarInfo], listed: Mapping[str, int],
                 label: str) -> Iterator[tarfile.TarInfo]:
    for member in members:
        if member.name not in listed:
            raise TamperedPackage(
                f"{label}: file {member.name!r} was added after signing (it is not listed in "
                f"the signed manifest); get a fresh copy of the package")
        if member.size != listed[member.name]:
            raise TamperedPackage(
                f"{label}: file {member.name!r} was changed after signing (it is "
                f"{member.size} bytes, the signed manifest says {listed[member.name]}); get a "
                f"fresh copy of the package")
        yield member


def read_members(archive: Path, names: Collection[str], *, max_member_bytes: int,
                 max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> dict[str, bytes]:
    """Read the members ``names`` of a package archive into memory, writing nothing to disk.

    This is how a package's manifest and signature are checked before anything else of the
    archive is extracted. The stream is read only until every name was found (archives that
    ``edgefleet package build`` writes put the manifest and the signature first). Every member
    passed on the way is held to the rules of :func:`extract_archive`.

    Args:
        archive: path of the ``.tar.gz`` file.
        names: member names to read; a name the archive lacks is absent from the result.
        max_member_bytes: largest size of one wanted member, in bytes.
        max_bytes: cap on the total size of the members' content, in bytes.
        max_members: cap on the number of members.

    Returns:
        Member name -> its content, for the wanted members found.

    Raises:
        PackageError: a wanted member is larger than ``max_member_bytes``, or the file is not a
            readable ``.tar.gz``.
        UnsafeArchive: a member breaks the rules of :func:`extract_archive`.
    """
    wanted = set(names)
    found: dict[str, bytes] = {}
    with _stream(archive, max_bytes=max_bytes, max_members=max_members) as (tar, _, members):
        for member in members:
            if member.name not in wanted:
                continue
            if member.size > max_member_bytes:
                raise PackageError(
                    f"{archive.name}: member {member.name!r} is {member.size} bytes, more than "
                    f"the {max_member_bytes} a package's {member.name} may have")
            content = tar.extractfile(member)
            found[member.name] = content.read() if content else b""
            if found.keys() == wanted:
                break
    return found


def write_archive(path: Path, files: Mapping[str, Path | bytes]) -> None:
    """Write a flat ``.tar.gz`` archive atomically (temporary file, fsync, rename).

    Members are regular files with mode 0644, owner 0:0 and no owner names, in the order of
    ``files``, in the POSIX.1-2001 (PAX) tar format.

    Args:
        path: the archive to write; an existing file is replaced.
        files: member name -> a file to copy, or the member's content.

    Raises:
        OSError: a file cannot be read, or ``path``'s folder cannot be written.
    """
    now = int(time.time())
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
                for name, source in files.items():
                    info = tarfile.TarInfo(name)
                    info.mode, info.mtime = 0o644, now
                    if isinstance(source, bytes):
                        info.size = len(source)
                        tar.addfile(info, io.BytesIO(source))
                    else:
                        with source.open("rb") as content:
                            info.size = os.fstat(content.fileno()).st_size
                            tar.addfile(info, content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
