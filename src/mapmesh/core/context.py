"""Who is calling an API: the region of the request's SigV4 scope and the account id."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CallerContext"]


@dataclass(frozen=True, slots=True)
class CallerContext:
    region: str
    account: str
