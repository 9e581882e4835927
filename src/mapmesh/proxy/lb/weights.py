"""Endpoint weights, validated once for every load balancer."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["weight_table"]

K = TypeVar("K", bound=Hashable)


def weight_table(keys: Sequence[K], weights: Sequence[int] | None) -> dict[K, int]:
    """``{key: weight}``; every weight defaults to 1, must be >= 1, keys must be distinct."""
    if weights is None:
        weights = [1] * len(keys)
    if len(weights) != len(keys):
        raise ValueError(f"weights: {len(weights)} given for {len(keys)} endpoints")
    table: dict[K, int] = {}
    for i, (key, weight) in enumerate(zip(keys, weights, strict=True)):
        if weight < 1:
            raise ValueError(f"weights[{i}]: must be >= 1, got {weight}")
        if key in table:
            raise ValueError(f"keys[{i}]: duplicate endpoint {key!r}")
        table[key] = weight
    return table
