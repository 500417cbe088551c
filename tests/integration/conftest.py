"""Fixtures of the agent's integration tests: signed packages and a real agent process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.agent_process import AgentProcess, start_agent
from support.packages import Packages, base_config, build_test_packages


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    return build_test_packages(tmp_path_factory.mktemp("packages"))


@pytest.fixture(scope="module")
def agent(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent process shared by a module's tests (tests use distinct model aliases)."""
    process = start_agent(base_config(packages), tmp_path_factory.mktemp("agent"))
    yield process
    assert process.stop() == 0, process.log()
