"""edgefleet's version: stamped into the wheel's metadata at build, read back at run time.

The SageMaker Edge Manager agent called its versions ``<major>.<build date>.<short commit>``,
e.g. ``1.20210512.96da6cc``, and fleet reports count devices by that string. edgefleet keeps the
scheme, but a wheel's ``Version`` must follow PEP 440, where a release segment holds digits
only. So the two spellings of one build are:

=================== ============================ =============================================
where               spelling                     example
=================== ============================ =============================================
wheel metadata      PEP 440, commit as the local ``1.20261203+g96da6cc``
                    version label
agent version       the original scheme          ``1.20261203.96da6cc`` (``--version``,
                                                 heartbeats' ``AgentVersion``, fleet reports)
=================== ============================ =============================================

The date is the HEAD commit's date in UTC (not the clock at build), so building one commit twice
gives one version. A work tree with uncommitted changes to tracked files builds
``1.20261203+g96da6cc.dirty`` (agent version ``1.20261203.96da6cc-dirty``). Without git
metadata (a plain copy of the source) the build falls back to :data:`DEV_VERSION`, unless the
version was stamped into ``src/edgefleet/_version.py`` (:func:`write_stamp`; never committed):
``scripts/build-release`` stamps its source archive so, and ``scripts/build-offline-bundle`` the
clean copy of the checkout it builds its wheel from.

At build time setuptools reads :data:`BUILD_VERSION` from this module (``pyproject.toml``:
``[tool.setuptools.dynamic] version = {attr = "edgefleet.version.BUILD_VERSION"}``); it loads
this file on its own, outside the package, so it imports nothing but the standard library. At
run time :func:`agent_version` reads ``importlib.metadata.version("edgefleet")``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

#: Major version of the agent scheme (the SageMaker agent's releases were all ``1.*``).
MAJOR = 1

#: The version of a build without git metadata or stamp, and of a source tree that is not
#: installed: PEP 440 and agent spelling alike, sorting before every dated build.
DEV_VERSION = f"{MAJOR}.0.dev0"

#: Where ``scripts/build-release`` stamps the version, relative to the source tree's top:
#: ``#`` comments and one line ``version = "<PEP 440 version>"``.
STAMP_FILE = Path("src/edgefleet/_version.py")

#: A dated build's PEP 440 version: ``<major>.<YYYYMMDD>+g<commit>[.dirty]``.
_BUILT = re.compile(r"(?P<release>\d+\.\d{8})\+g(?P<commit>[0-9a-f]{7,40})(?P<dirty>\.dirty)?")

#: The stamp file's version line.
_STAMP = re.compile(r'version = "(?P<version>[A-Za-z0-9.+!_-]{1,64})"')

#: Seconds a git command may take at build before the build falls back to the stamp.
_GIT_TIMEOUT_SECONDS = 10.0


def to_agent_version(version: str) -> str:
    """The agent spelling of a wheel's PEP 440 ``version``.

    ``1.20261203+g96da6cc`` -> ``1.20261203.96da6cc``; ``1.20261203+g96da6cc.dirty`` ->
    ``1.20261203.96da6cc-dirty``; any other version (e.g. :data:`DEV_VERSION`) unchanged.
    Every result fits the control plane's ``AgentVersion`` rule (``[a-zA-Z0-9 _.-]{1,64}``).
    """
    built = _BUILT.fullmatch(version)
    if built is None:
        return version
    dirty = "-dirty" if built["dirty"] else ""
    return f"{built['release']}.{built['commit']}{dirty}"


@functools.cache
def agent_version() -> str:
    """This installation's agent version, e.g. ``1.20261203.96da6cc`` (see the module doc).

    Read from the installed distribution's metadata (``importlib.metadata``), so it is the
    version pip installed, also for an editable install (where it is the commit the install
    was made from). :data:`DEV_VERSION` when edgefleet runs from a source tree that is not
    installed.
    """
    try:
        return to_agent_version(importlib.metadata.version("edgefleet"))
    except importlib.metadata.PackageNotFoundError:
        return DEV_VERSION


def _git(root: Path, *args: str) -> str:
    """Output of ``git -C root ARGS`` (stripped); raises OSError or CalledProcessError."""
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True, timeout=_GIT_TIMEOUT_SECONDS,
                          env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
    return done.stdout.strip()


def git_version(root: Path) -> str | None:
    """The PEP 440 version of the work tree at ``root`` from git, or None.

    None when git is missing or fails, or when ``root`` is not the top of a git work tree (a
    source archive unpacked inside some other repository must not take that one's commit).
    """
    try:
        if Path(_git(root, "rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None
        date = _git(root, "log", "-1", "--format=%cd", "--date=format-local:%Y%m%d")
        commit = _git(root, "rev-parse", "--short=7", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = ".dirty" if changed else ""
    return f"{MAJOR}.{date}+g{commit}{dirty}"


def stamped_version(path: Path) -> str | None:
    """The version ``scripts/build-release`` stamped into the file ``path``, or None if there
    is no such file.

    Raises:
        ValueError: the file exists but holds more than one ``version = "..."`` line and
            ``#`` comments.
    """
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    lines = [line for line in source.splitlines() if line.strip() and not line.startswith("#")]
    stamp = _STAMP.fullmatch(lines[0].strip()) if len(lines) == 1 else None
    if stamp is None:
        raise ValueError(f"{path} must hold one line 'version = \"<PEP 440 version>\"' besides "
                         "comments: delete it, or run scripts/build-release again")
    return stamp["version"]


def write_stamp(root: Path, version: str) -> Path:
    """Stamp ``version`` (PEP 440) into the source tree at ``root``; returns the file written.

    Raises:
        ValueError: ``version`` is not one the stamp can hold.
    """
    line = f'version = "{version}"'
    if _STAMP.fullmatch(line) is None:
        raise ValueError(f"cannot stamp version {version!r}: expected a PEP 440 version such "
                         "as 1.20261203+g96da6cc")
    path = root / STAMP_FILE
    path.write_text("# Written by scripts/build-release or scripts/build-offline-bundle; never "
                    f"committed.\n# See src/edgefleet/version.py.\n{line}\n", encoding="utf-8")
    return path


def build_version(root: Path) -> str:
    """The PEP 440 version a build of the source tree at ``root`` gets.

    In order: git (the tree is a checkout), the stamp (a source archive made by
    ``scripts/build-release``), :data:`DEV_VERSION`.
    """
    return git_version(root) or stamped_version(root / STAMP_FILE) or DEV_VERSION


def __getattr__(name: str) -> str:
    """``BUILD_VERSION``: :func:`build_version` of this source tree, computed when setuptools
    asks for it (a module attribute, so that importing the module never runs git)."""
    if name == "BUILD_VERSION":
        return build_version(Path(__file__).resolve().parents[2])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
