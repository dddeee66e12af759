"""Online feedback, the contract between the recommender and the stream processor.

The recommender names every response with a ``rec_id`` that describes itself (``RecTag``:
when it was served, which algorithm and user segment, the experiment and variant if any),
counts the impression, and records per user which rec id showed which product. The stream
processor reads ``events.v1`` and counts clicks and conversions against those rec ids. Both
sides write the same Redis counters, laid out here.

Rec id
    Signed by the recommender, verified by the processor: format and key in
    ``streamrec_shared.rec_ids``. A rec id that does not verify gives no credit to anything.

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

from collections.abc import Container
from dataclasses import dataclass
from typing import NamedTuple

from streamrec_shared.algorithms import REGISTRY

KINDS = ("imp", "clk", "hit", "conv")
ALGORITHM_CODES = REGISTRY.codes
"""Algorithm name -> the one letter a rec id carries (``streamrec_shared.algorithms``, the one
list of algorithms; a live view, so plug-ins registered there are decoded too)."""
SEGMENT_CODES = {"new": "n", "light": "l", "heavy": "h"}
NONE = "-"
BUCKET_S = 60
UNKNOWN_CODE = "x"
EXPERIMENTS_CACHE = "sr:experiments"
"""HASH experiment name -> its JSON definition (``name``, ``variants`` each with a ``name``):
the recommender's cache of the ``experiments`` table, read by the processor for label values."""
ROLLOUT_VARIANTS = ("canary", "control")
"""The variants of a gradual rollout (experiment ``rollout<version>``)."""
OTHER = "other"
"""The metric label of a value outside the known set."""


def label(value: str | None, known: Container[str]) -> str:
    """A metric label value from input: ``-`` for none, the value if known, else ``other``."""
    if value is None:
        return NONE
    return value if value in known else OTHER


def bucket_key(minute: int) -> str:
    return f"sr:on:{minute}"


def field(
    kind: str, algorithm: str, segment: str, experiment: str | None, variant: str | None
) -> str:
    return f"{kind}|{algorithm}|{segment}|{experiment or NONE}|{variant or NONE}"


class Field(NamedTuple):
    """A counter field read back (``field``'s parts; ``-`` where there is none)."""

    kind: str
    algorithm: str
    segment: str
    experiment: str
    variant: str


def parse_field(name: str | bytes) -> Field | None:
    """The parts of a counter field as Redis returns it; None for a field not of this layout
    (every reader skips those)."""
    parts = (name.decode() if isinstance(name, bytes) else name).split("|")
    return Field(*parts) if len(parts) == 5 else None


def shown_key(user_id: str) -> str:
    """HASH product -> rec id of the products recently shown to ``user_id``."""
    return f"sr:rs:{user_id}"


def event_key(event_id: str) -> str:
    return f"sr:ae:{event_id}"


def hit_key(rec_id: str) -> str:
    return f"sr:ah:{rec_id}"


def conversion_key(rec_id: str, product_id: str) -> str:
    return f"sr:ac:{rec_id}:{product_id}"


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
