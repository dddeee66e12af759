"""Rec ids: the signed, self-describing name of one recommendation response.

Format
    ``r<ms base36>.<algorithm code><segment code>.<nonce><tag>``, then
    ``.<experiment>.<variant>`` if any; at most 64 characters. The tag is HMAC-SHA256 (key
    ``STREAMREC_FEEDBACK__REC_ID_KEY``, shared by the recommender that signs and the stream
    processor that verifies) over the rest of the rec id, truncated to 48 bits; nonce (32
    random bits) and tag are base64url, 6 and 8 characters. A client can
    hand back a rec id it was given, but cannot make one up or alter its time, algorithm,
    segment, experiment or variant (each guess has a 2^-48 chance). A rec id that does not
    verify is not feedback on any response: the event still counts in the user's profile, but
    gives no credit to an arm, variant or model.

Without a configured key each process signs with a random key of its own (a warning at start):
rec ids then verify only in the process that made them, so the processor credits nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping

from streamrec_shared.feedback import SEGMENT_CODES, UNKNOWN_CODE, RecTag

logger = logging.getLogger(__name__)

MAX_LENGTH = 64
NONCE_BYTES = 4
TAG_BYTES = 6
NONCE_CHARS = 6
TAG_CHARS = 8
_SEGMENTS = {v: k for k, v in SEGMENT_CODES.items()}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def describe(rec_id: str, algorithm_codes: Mapping[str, str]) -> RecTag | None:
    """What a well-formed rec id *claims* (not verified: for display and tests only)."""
    parts = rec_id.split(".")
    if len(parts) not in (3, 5) or not parts[0].startswith("r") or len(parts[1]) != 2:
        return None
    if len(parts[2]) != NONCE_CHARS + TAG_CHARS:
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


class RecIds:
    """Makes and verifies rec ids with one key. ``algorithm_codes``: algorithm name -> the one
    letter a rec id carries (a live mapping is fine); an unknown algorithm is written ``x``."""

    def __init__(self, key: bytes | None, algorithm_codes: Mapping[str, str]) -> None:
        if key is None:
            logger.warning(
                "no STREAMREC_FEEDBACK__REC_ID_KEY: rec ids are signed with a random key of this"
                " process, so no other process credits feedback on them"
            )
            key = secrets.token_bytes(32)
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self.algorithm_codes = algorithm_codes

    def _tag(self, body: str) -> str:
        mac = self._mac.copy()
        mac.update(body.encode())
        return _b64(mac.digest()[:TAG_BYTES])

    def new(self, tag: RecTag) -> str:
        """The signed rec id of ``tag``; without its experiment and variant if they would make
        it longer than ``MAX_LENGTH``."""
        algorithm = self.algorithm_codes.get(tag.algorithm, UNKNOWN_CODE)
        segment = SEGMENT_CODES.get(tag.segment, UNKNOWN_CODE)
        nonce = _b64(secrets.token_bytes(NONCE_BYTES))
        head = f"r{_b36(int(tag.served_at * 1000))}.{algorithm}{segment}.{nonce}"
        tail = f".{tag.experiment}.{tag.variant}" if tag.experiment and tag.variant else ""
        if len(head) + TAG_CHARS + len(tail) > MAX_LENGTH:
            tail = ""
        return f"{head}{self._tag(head + tail)}{tail}"

    def parse(self, rec_id: str) -> RecTag | None:
        """The tag of a rec id this key signed; None for anything else (forged, altered,
        malformed)."""
        tag = describe(rec_id, self.algorithm_codes)
        if tag is None:
            return None
        parts = rec_id.split(".", 3)
        head = f"{parts[0]}.{parts[1]}.{parts[2][:NONCE_CHARS]}"
        tail = f".{parts[3]}" if len(parts) == 4 else ""
        if not hmac.compare_digest(parts[2][NONCE_CHARS:], self._tag(head + tail)):
            return None
        return tag
