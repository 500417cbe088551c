"""Waiting in tests for something another thread or process does: one helper for all of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "the condition",
             *, interval: float = 0.05) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something truthy.

    Returns:
        That value (so a test can wait for a record and use it).

    Raises:
        AssertionError: nothing truthy within ``timeout`` seconds; the message names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
