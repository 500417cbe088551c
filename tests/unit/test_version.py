"""Release versions: the wheel's PEP 440 version from git or the stamp, the agent spelling at
run time, and the hook setuptools calls at build (``edgefleet.version.BUILD_VERSION``)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

import edgefleet
from edgefleet import version as versions

ROOT = Path(__file__).resolve().parents[2]

#: The SageMaker agent's scheme, as edgefleet builds from git report it.
AGENT_SCHEME = re.compile(r"1\.\d{8}\.[0-9a-f]{7,40}(-dirty)?")


def _git(tree: Path, *args: str, date: str = "2021-05-12T12:00:00+00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(["git", "-C", str(tree), "-c", "user.name=edgefleet",
                           "-c", "user.email=dev@edgefleet.invalid", "-c", "commit.gpgsign=false",
                           *args], check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


def _repo(tree: Path, *, date: str = "2021-05-12T12:00:00+00:00") -> str:
    """A git work tree at ``tree`` with one commit made at ``date``; returns its short hash."""
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "README").write_text("edgefleet\n")
    _git(tree, "init", "--quiet")
    _git(tree, "add", "README")
    _git(tree, "commit", "--quiet", "-m", "first", date=date)
    return _git(tree, "rev-parse", "--short=7", "HEAD")


@pytest.mark.parametrize(("wheel", "agent"), [
    ("1.20210512+g96da6cc", "1.20210512.96da6cc"),
    ("1.20261203+g96da6cc.dirty", "1.20261203.96da6cc-dirty"),
    ("1.20261203+g96da6cc0123456789abcdef0123456789abcdef", "1.20261203.96da6cc0123456789abcdef"
                                                            "0123456789abcdef"),
    (versions.DEV_VERSION, versions.DEV_VERSION),
    ("0.1.0", "0.1.0"),
])
def test_agent_spelling_of_a_wheel_version(wheel: str, agent: str) -> None:
    assert Version(wheel)  # every wheel version is PEP 440
    assert versions.to_agent_version(wheel) == agent
    # What the control plane's AgentVersion accepts (botocore's Version shape, 1-64 chars).
    assert re.fullmatch(r"[a-zA-Z0-9 _.-]{1,64}", agent)


def test_git_version_is_the_head_commit_date_in_utc_and_its_hash(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    short = _repo(tree, date="2021-05-12T23:30:00-02:00")  # 2021-05-13 01:30 UTC
    assert versions.git_version(tree) == f"1.20210513+g{short}"
    (tree / "notes.txt").write_text("untracked files do not make a build dirty\n")
    assert versions.git_version(tree) == f"1.20210513+g{short}"
    (tree / "README").write_text("changed\n")
    assert versions.git_version(tree) == f"1.20210513+g{short}.dirty"
    assert Version(f"1.20210513+g{short}.dirty") > Version(versions.DEV_VERSION)


def test_no_version_from_git_outside_the_top_of_a_work_tree(tmp_path: Path) -> None:
    assert versions.git_version(tmp_path) is None  # no repository at all
    _repo(tmp_path / "repo")
    unpacked = tmp_path / "repo" / "build" / "edgefleet-1.0"  # a source archive inside a repo
    unpacked.mkdir(parents=True)
    assert versions.git_version(unpacked) is None


def test_build_version_prefers_git_then_the_stamp_then_dev(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    assert versions.build_version(tree) == versions.DEV_VERSION
    (tree / versions.STAMP_FILE).parent.mkdir(parents=True)
    stamp = versions.write_stamp(tree, "1.20210512+g96da6cc")
    assert stamp == tree / "src" / "edgefleet" / "_version.py"
    assert versions.build_version(tree) == "1.20210512+g96da6cc"
    short = _repo(tree)
    assert versions.build_version(tree) == f"1.20210512+g{short}"


@pytest.mark.parametrize("text", ['version = "1.0"\nversion = "2.0"\n', "version = 1\n",
                                  'version = "1.0 ; rm -rf /"\n', ""])
def test_a_broken_stamp_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    stamp = tmp_path / "_version.py"
    stamp.write_text(text)
    with pytest.raises(ValueError, match=r"_version\.py must hold one line .*build-release"):
        versions.stamped_version(stamp)


def test_only_a_version_can_be_stamped(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("cannot stamp version '1.0\"; import os'")):
        versions.write_stamp(tmp_path, '1.0"; import os')


def test_setuptools_reads_the_build_version_from_the_source_tree(tmp_path: Path) -> None:
    """The hook as pyproject.toml declares it, in a fresh interpreter (as a build runs it)."""
    tree = tmp_path / "tree"
    (tree / "src" / "edgefleet").mkdir(parents=True)
    shutil.copy(ROOT / "src" / "edgefleet" / "version.py", tree / "src" / "edgefleet")
    short = _repo(tree, date="2026-12-03T10:00:00+00:00")
    read = ("import sys; from setuptools.config.expand import read_attr; "
            "print(read_attr('edgefleet.version.BUILD_VERSION', {'': 'src'}, sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", read, str(tree)], capture_output=True,
                          text=True, check=True, cwd=tree)
    assert done.stdout.strip() == f"1.20261203+g{short}"


def test_the_installed_version_is_the_agent_version() -> None:
    installed = importlib.metadata.version("edgefleet")
    assert edgefleet.__version__ == versions.agent_version() == versions.to_agent_version(
        installed)
    assert AGENT_SCHEME.fullmatch(edgefleet.__version__), (
        f"edgefleet {installed} was not built from a git checkout: reinstall with "
        "pip install -e . from one")
    assert versions.BUILD_VERSION.startswith("1.")  # this checkout's version, from git
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        edgefleet.nothing  # noqa: B018


def test_edgefleet_agent_version_prints_it() -> None:
    done = subprocess.run([sys.executable, "-m", "edgefleet.agent", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == versions.agent_version()
