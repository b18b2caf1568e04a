"""Identifiers.

Run ids start with their UTC start time (``20261125-214400-3fa9c1d27be04a55``) so they sort by
time and name their own log file (``runs/2026/11/<run_id>.jsonl``) without a lookup. The random
part is 64 bits: among a million runs started in the same second the chance of a collision is
about 3e-8 (24 bits, the old length, collided in soaks). Uniqueness does not rest on chance alone:
a new run takes the id's owner lock and creates its log exclusively (``O_EXCL``), so a collision
fails that run's start loudly instead of sharing a log. Older 6-hex-digit ids stay valid.

Ids of things a run creates inside itself (asks, memory events) are derived from the run id, the
node's key and what they are (see ``journal``), so re-executing the same code after a crash derives
the same ids whatever order its tasks run in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

RANDOM_BYTES = 8
RUN_ID_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{6})-([0-9a-f]{6,})$")


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(RANDOM_BYTES)}"


def is_run_id(text: str) -> bool:
    return RUN_ID_RE.match(text) is not None


def derived_id(prefix: str, *parts: object) -> str:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=6).hexdigest()
    return f"{prefix}-{digest}"
