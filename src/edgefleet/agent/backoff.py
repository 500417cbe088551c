"""Retry delays shared by the agent's background work (control plane, downloads, capture)."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter.

    The n-th consecutive delay is drawn uniformly from ``[d/2, d]`` with
    ``d = min(maximum, first * 2**(n-1))`` (seconds): the jitter spreads a fleet's retries after
    an outage of the control plane.
    """

    def __init__(self, first: float, maximum: float, rng: random.Random | None = None) -> None:
        self._first = first
        self._maximum = max(first, maximum)
        self._failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next retry, in seconds; each call counts one more failure."""
        ceiling = min(self._maximum, self._first * 2.0 ** min(self._failures, 60))
        self._failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """A request succeeded: the next failure waits ``first`` seconds again (at most)."""
        self._failures = 0
