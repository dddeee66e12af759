"""Online feedback, the contract between the recommender and the stream processor.

The recommender names every response with a ``rec_id`` that describes itself (``RecTag``:
when it was served, which algorithm and user segment, the experiment and variant if any),
counts the impression, and records per user which rec id showed which product. The stream
processor reads ``events.v1`` and counts clicks and conversions against those rec ids. Both
sides write the same Redis counters, laid out here.

Rec id
    ``r<ms base36>.<algorithm code><segment code>.<8 hex>[.<experiment>.<variant>]``, at most 64
    characters. The one-letter algorithm codes are the caller's table (``algorithm_codes``:
    name -> code); an unknown algorithm is written as ``x`` and a rec id with an unknown code
    does not parse.

Counters
    HASH ``sr:on:<minute>`` (unix minute of the *impression*), field
    ``<kind>|<algorithm>|<segment>|<experiment>|<variant>`` (``-`` when none), value a count.
    Kinds: ``imp`` (responses), ``clk`` (click events), ``hit`` (responses clicked at least
    once), ``conv`` (distinct (response, product) purchases). Feedback is counted in the
    impression's minute, so a window's rates compare like with like.

Attribution state
    HASH ``sr:rs:<user>`` product -> rec id of the last response that showed it (written by the
    recommender, expiring after the attribution window); ``sr:ae:<event_id>`` (an event counted),
    ``sr:ah:<rec_id>`` (a response hit), ``sr:ac:<rec_id>:<product>`` (a conversion counted):
    the processor's idempotence keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from streamrec_shared.algorithms import REGISTRY

KINDS = ("imp", "clk", "hit", "conv")
ALGORITHM_CODES = REGISTRY.codes
"""Algorithm name -> the one letter a rec id carries (``streamrec_shared.algorithms``, the one
list of algorithms; a live view, so plug-ins registered there are decoded too)."""
SEGMENT_CODES = {"new": "n", "light": "l", "heavy": "h"}
NONE = "-"
BUCKET_S = 60
UNKNOWN_CODE = "x"


def bucket_key(minute: int) -> str:
    return f"sr:on:{minute}"


def field(
    kind: str, algorithm: str, segment: str, experiment: str | None, variant: str | None
) -> str:
    return f"{kind}|{algorithm}|{segment}|{experiment or NONE}|{variant or NONE}"


def shown_key(user_id: str) -> str:
    """HASH product -> rec id of the products recently shown to ``user_id``."""
    return f"sr:rs:{user_id}"


def event_key(event_id: str) -> str:
    return f"sr:ae:{event_id}"


def hit_key(rec_id: str) -> str:
    return f"sr:ah:{rec_id}"


def conversion_key(rec_id: str, product_id: str) -> str:
    return f"sr:ac:{rec_id}:{product_id}"


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass(frozen=True)
class RecTag:
    """What a rec id says about the response it names."""

    served_at: float
    algorithm: str
    segment: str
    experiment: str | None = None
    variant: str | None = None

    @property
    def minute(self) -> int:
        return int(self.served_at // BUCKET_S)


def new_rec_id(tag: RecTag, algorithm_codes: Mapping[str, str]) -> str:
    """The rec id of ``tag`` (format in the module doc), at most 64 characters."""
    ms = int(tag.served_at * 1000)
    core = (
        f"r{_b36(ms)}.{algorithm_codes.get(tag.algorithm, UNKNOWN_CODE)}"
        f"{SEGMENT_CODES.get(tag.segment, UNKNOWN_CODE)}.{secrets.token_hex(4)}"
    )
    if tag.experiment and tag.variant:
        full = f"{core}.{tag.experiment}.{tag.variant}"
        if len(full) <= 64:
            return full
    return core


_SEGMENTS = {v: k for k, v in SEGMENT_CODES.items()}


def parse_rec_id(rec_id: str, algorithm_codes: Mapping[str, str]) -> RecTag | None:
    """The tag of a rec id made by ``new_rec_id`` with the same table; None for anything else."""
    parts = rec_id.split(".")
    if len(parts) not in (3, 5) or not parts[0].startswith("r") or len(parts[1]) != 2:
        return None
    try:
        ms = int(parts[0][1:], 36)
    except ValueError:
        return None
    algorithm = next((a for a, c in algorithm_codes.items() if c == parts[1][0]), None)
    segment = _SEGMENTS.get(parts[1][1])
    if algorithm is None or segment is None:
        return None
    exp, var = (parts[3], parts[4]) if len(parts) == 5 else (None, None)
    return RecTag(ms / 1000.0, algorithm, segment, exp, var)
