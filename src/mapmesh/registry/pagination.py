"""Opaque NextToken pagination over lists sorted by a stable key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from mapmesh.registry.errors import invalid_input

__all__ = ["paginate"]

T = TypeVar("T")


def _encode(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def _decode(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_input("NextToken is not a token this service returned") from None


def paginate(
    items: Sequence[T], key: Callable[[T], str], max_results: int, next_token: str | None
) -> tuple[list[T], str | None]:
    """One page of ``items`` (already sorted by ``key``) after the token's position."""
    start = 0
    if next_token:
        after = _decode(next_token)
        while start < len(items) and key(items[start]) <= after:
            start += 1
    page = list(items[start : start + max_results])
    more = start + max_results < len(items)
    return page, (_encode(key(page[-1])) if more and page else None)
