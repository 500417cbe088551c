"""Options shared by every test folder."""

from __future__ import annotations

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
