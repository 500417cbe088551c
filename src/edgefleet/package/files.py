"""Opening the files of a package without trusting what kind of file they are.

A package's url, and the files inside a package folder, come from a client. ``open()`` on a
FIFO blocks until someone writes to it, which would hold an agent worker for ever (a client's
deadline does not free it) and keep SIGTERM from ending the process; reading a device file can
block or never end. So every read goes through :func:`open_regular`, which opens without
blocking (``O_NONBLOCK``) and checks the opened file itself with ``fstat``: there is no gap
between the check and the read in which the path could be swapped.
"""

from __future__ import annotations

import os
import stat
from io import BufferedReader
from pathlib import Path

from edgefleet.errors import PackageError

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def open_regular(path: Path, *, label: str | None = None) -> BufferedReader:
    """Open ``path`` for reading in binary mode if, and only if, it is a regular file.

    Symbolic links are followed (what matters is the file read). The returned file is blocking
    again for reads (``O_NONBLOCK`` means nothing for a regular file on Linux).

    Args:
        path: the file to open.
        label: how messages name the file (default: ``path`` itself).

    Raises:
        PackageError: ``path`` is a FIFO, device, socket or folder; the message says which.
        OSError: the file cannot be opened (missing, no permission, name too long, ...).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise PackageError(
                f"{label or path} is {kind}, not a regular file; a model package and the "
                f"files in it are regular files (build one with `edgefleet package build`)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
