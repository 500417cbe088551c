"""Options shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true",
        help="run the reliability tests at their full length (docs/reliability.md gives both "
        "sizes); CI runs the short version")


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --long``: reliability tests run their full number of trials."""
    return bool(request.config.getoption("--long"))


@pytest.fixture(autouse=True)
def _no_agent_outlives_its_test() -> Iterator[None]:
    """Agents a test started and did not stop (it failed first) are killed after it; agents of
    wider-scoped fixtures started before the test are left alone."""
    from support.agent_process import STARTED, stop_agents_from
    mark = len(STARTED)
    yield
    stop_agents_from(mark)
