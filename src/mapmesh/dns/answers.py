"""Prebuilt answers: what a (name, type) lookup hands to the query path.

An :class:`Answer` turns into the record sections of one reply with ``pick(rng)``. Most
answers are fixed and *are* their :class:`Sections` (``pick`` returns ``self``); the two
routing policies add randomness on top of prebuilt bytes:

* :class:`Sample` — MULTIVALUE with more than 8 eligible records: 8 distinct records drawn
  per query (``random.sample``, O(k)), each with its own glue;
* :class:`OneOf` — WEIGHTED: one prebuilt single-record answer drawn per query.

All values are immutable after construction, so the DNS thread may use them while the
control plane builds their replacements.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from typing import NamedTuple, Protocol

__all__ = [
    "MAX_RECORDS",
    "Answer",
    "OneOf",
    "Piece",
    "Sample",
    "Sections",
    "multivalue",
    "weighted",
]

MAX_RECORDS = 8  # Route 53 multivalue answers carry up to eight records

_HEAD = struct.Struct(">HHHH")  # qdcount (always 1), ancount, nscount, arcount


class Answer(Protocol):
    def pick(self, rng: random.Random) -> Sections: ...


class Piece(NamedTuple):
    """One answer record with the glue records that go with it."""

    record: bytes
    glue: tuple[bytes, ...] = ()


class Sections:
    """The answer, authority and additional sections of one reply, encoded.

    ``head``/``head_opt`` are the header's four counts (without/with our OPT record), so
    the query path only prepends the id and flags and appends the question and ``tail``.
    """

    __slots__ = ("additional", "ancount", "arcount", "body", "head", "head_opt", "nscount", "tail")

    def __init__(
        self,
        answer: Sequence[bytes] = (),
        authority: Sequence[bytes] = (),
        additional: Sequence[bytes] = (),
    ) -> None:
        self.ancount = len(answer)
        self.nscount = len(authority)
        self.arcount = len(additional)
        self.body = b"".join((*answer, *authority))
        self.additional = b"".join(additional)
        self.tail = self.body + self.additional
        self.head = _HEAD.pack(1, self.ancount, self.nscount, self.arcount)
        self.head_opt = _HEAD.pack(1, self.ancount, self.nscount, self.arcount + 1)

    @classmethod
    def of(cls, pieces: Sequence[Piece]) -> Sections:
        """The answer made of ``pieces`` (their glue in the additional section)."""
        return cls([p.record for p in pieces], (), [g for p in pieces for g in p.glue])

    def pick(self, rng: random.Random) -> Sections:
        return self

    def __repr__(self) -> str:
        return f"Sections(an={self.ancount}, ns={self.nscount}, ar={self.arcount})"


class Sample:
    """MULTIVALUE over more than :data:`MAX_RECORDS` records: a random 8 per query."""

    __slots__ = ("_pieces",)

    def __init__(self, pieces: Sequence[Piece]) -> None:
        if len(pieces) <= MAX_RECORDS:
            raise ValueError("a Sample needs more pieces than it returns")
        self._pieces = tuple(pieces)

    def pick(self, rng: random.Random) -> Sections:
        return Sections.of(rng.sample(self._pieces, MAX_RECORDS))


class OneOf:
    """WEIGHTED: one of several prebuilt answers, uniformly at random per query."""

    __slots__ = ("_choices",)

    def __init__(self, choices: Sequence[Sections]) -> None:
        if not choices:
            raise ValueError("OneOf needs at least one choice")
        self._choices = tuple(choices)

    def pick(self, rng: random.Random) -> Sections:
        return rng.choice(self._choices)


def multivalue(pieces: Sequence[Piece]) -> Answer:
    """All pieces when they fit in one answer, else a fresh sample of 8 per query."""
    return Sections.of(pieces) if len(pieces) <= MAX_RECORDS else Sample(pieces)


def weighted(pieces: Sequence[Piece]) -> Answer:
    """One piece per query; a single piece needs no draw."""
    if len(pieces) == 1:
        return Sections.of(pieces)
    return OneOf([Sections.of([p]) for p in pieces])
