"""Where a request's URLs and file names point, kept inside the configured folders.

The translator's URLs carry no folder: ``file:///NAME`` is NAME inside the bridge's data folder,
``s3:///NAME`` is NAME under the data prefix of the configured bucket (the original translator's
convention). NAME is a relative POSIX path. Refused, as Invalid params naming the parameter:

- absolute names (``file:////etc/passwd``) and a host part (``file://host/x``, ``s3://b/x``);
- empty, ``.`` and ``..`` path segments (also when percent-encoded, ``%2e%2e``), NUL characters;
- for local files, a name whose real path (symbolic links followed) leaves the folder.

A link that is swapped between this check and the open can still redirect one access; the folders
are the operator's, so that race needs write access the bridge's callers do not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from edgefleet.bridge.protocol import InvalidParams
from edgefleet.errors import echo

#: Longest S3 object key, in bytes (Amazon S3's limit).
MAX_KEY_BYTES = 1024
#: Longest name accepted, in characters (PATH_MAX is 4096 bytes on Linux).
MAX_NAME_CHARS = 1024

Scheme = Literal["file", "s3"]


@dataclass(frozen=True, slots=True)
class DataUrl:
    """A parsed ``file:///NAME`` or ``s3:///NAME``.

    Attributes:
        scheme: ``"file"`` or ``"s3"``.
        name: NAME, checked by :func:`check_name`.
    """

    scheme: Scheme
    name: str

    @property
    def suffix(self) -> str:
        """NAME's last suffix in lower case (``".npy"``, ``".png"``; ``""`` without one)."""
        return PurePosixPath(self.name).suffix.lower()

    def __str__(self) -> str:
        return f"{self.scheme}:///{self.name}"

    def sibling(self, name: str) -> DataUrl:
        """A URL in the same folder as this one, with file name ``name`` (one segment)."""
        parent = PurePosixPath(self.name).parent
        return DataUrl(self.scheme, str(parent / name) if str(parent) != "." else name)


def check_name(name: object, param: str) -> str:
    """Return ``name`` if it is a safe relative POSIX path.

    Raises:
        InvalidParams: not a string, empty, absolute, too long, or with an empty, ``.`` or
            ``..`` segment or a NUL character.
    """
    if not isinstance(name, str) or not name:
        raise InvalidParams(param, "must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidParams(param, f"is longer than {MAX_NAME_CHARS} characters")
    if "\0" in name:
        raise InvalidParams(param, "must not contain NUL characters")
    if name.startswith("/"):
        raise InvalidParams(param, f"{echo(name)!r} is absolute; names are relative to the "
                            "configured folder")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidParams(param, f"{echo(name)!r} has an empty, `.` or `..` segment; names "
                            "must stay inside the configured folder")
    return name


def parse_data_url(url: object, param: str) -> DataUrl:
    """Parse ``file:///NAME`` or ``s3:///NAME`` (NAME percent-decoded, then checked).

    Raises:
        InvalidParams: not a string, another scheme, a host part, or an unsafe NAME.
    """
    if not isinstance(url, str) or not url:
        raise InvalidParams(param, "must be a URL string: file:///NAME or s3:///NAME")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" in the host part
        raise InvalidParams(param, f"{echo(url)!r} is not a URL") from None
    if parts.scheme not in ("file", "s3"):
        raise InvalidParams(param, f"{echo(url)!r} is not file:///NAME or s3:///NAME")
    if parts.netloc or not url.startswith(f"{parts.scheme}:///"):
        raise InvalidParams(param, f"{echo(url)!r} has a host or bucket part; write "
                            f"{parts.scheme}:///NAME (the folder and bucket are configured)")
    if parts.query or parts.fragment:
        raise InvalidParams(param, f"{echo(url)!r} has a query or fragment; write "
                            f"{parts.scheme}:///NAME")
    try:
        name = unquote(parts.path[1:], errors="strict")
    except UnicodeDecodeError:
        raise InvalidParams(param, f"{echo(url)!r} percent-encodes bytes that are not UTF-8"
                            ) from None
    scheme: Scheme = "file" if parts.scheme == "file" else "s3"
    return DataUrl(scheme, check_name(name, param))


def resolve_in(folder: Path, name: str, param: str) -> Path:
    """The path of ``name`` (see :func:`check_name`) inside ``folder``, symbolic links followed.

    The file need not exist (outputs); the folder's own links are allowed.

    Raises:
        InvalidParams: ``name`` is unsafe, or its real path is outside ``folder``'s real path.
    """
    check_name(name, param)
    root = folder.resolve()
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError) as error:  # a link loop, a name too long
        raise InvalidParams(param, f"{echo(name)!r} cannot be resolved: {error}") from None
    if not path.is_relative_to(root) or path == root:
        raise InvalidParams(param, f"{echo(name)!r} leads outside the configured folder "
                            "(through a symbolic link)")
    return path


def s3_key(prefix: str, name: str, param: str) -> str:
    """The object key of ``name`` (checked) under key prefix ``prefix`` (``""``: bucket root).

    Raises:
        InvalidParams: ``name`` is unsafe or the key is longer than :data:`MAX_KEY_BYTES`.
    """
    check_name(name, param)
    key = f"{prefix}/{name}" if prefix else name
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidParams(param, f"makes an S3 key longer than {MAX_KEY_BYTES} bytes")
    return key
