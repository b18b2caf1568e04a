"""What the two front ends (the ``ag`` CLI and the dashboard) share about what a person types.

Both read the same words: a time (``--since 2h``, ``since:2h``), inputs as a JSON object
(``--input``), a target (``file.py:fn``); both refuse bad ones with ``exits.UsageError``. These
live one floor below both so neither imports the other: the CLI starts the dashboard
(``ag tui``), so the dashboard taking them from the CLI would be a circle across floors.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from aethergraph.runtime.exits import UsageError

_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# What a time may be: from the epoch to the year 5138 (a key in microseconds fits SQLite's
# 64-bit integers far beyond that; a float past it is someone's typo or an attack).
MAX_TIME = 1e11


def parse_time(text: str | None) -> float | None:
    """``30m`` / ``2h`` / ``7d`` ago, an ISO date/time (local time), or epoch seconds."""
    if text is None:
        return None
    m = _REL.match(text.strip())
    if m:
        value = time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    else:
        try:
            value = float(text)
        except ValueError:
            value = _iso(text)
    if not math.isfinite(value) or not 0 <= value <= MAX_TIME:
        raise UsageError(f"time {text!r} is out of range (from 1970 to the year 5000)")
    return value


def _iso(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"cannot read {text!r} as a time (try 2h, 7d, 2026-11-25 or 2026-11-25T10:00)") from None


def parse_inputs(text: str | bytes | None, what: str = "--input") -> dict[str, Any]:
    """A run's inputs as typed: one JSON object (``what`` names where it came from)."""
    if text is None:
        return {}
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply to be read") from None
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def entrypoint(target: str) -> str:
    """The target as a run records it (``ag resume`` loads it again from anywhere): a file's
    path made absolute, a module path (``pkg.mod:fn``) as it is."""
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where:
        return f"{Path(where).expanduser().resolve()}:{attr}"
    return target
