"""Exponential backoff with full jitter, for reconnect loops."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays ``base * 2**n`` capped at ``cap``, each drawn uniformly from [0, delay]."""

    def __init__(
        self, base: float = 0.1, cap: float = 10.0, rng: random.Random | None = None
    ) -> None:
        self._base = base
        self._cap = cap
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        delay = min(self._cap, self._base * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(0, delay)

    def reset(self) -> None:
        self._attempt = 0
