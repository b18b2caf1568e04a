"""Callables the dask tests submit as ``{"fn": "tests.dask_fns:NAME"}``: importable on the test's
workers (they run with the repository root on ``PYTHONPATH``), plain standard library."""

from __future__ import annotations

import os
import time


def add(a: int, b: int) -> dict:
    return {"sum": a + b, "pid": os.getpid()}


def boom(message: str) -> None:
    raise ValueError(message)


def gated(ledger: str, gate: str, name: str) -> str:
    """Append ``name`` to ``ledger`` (one line: it ran once), then wait for ``gate`` to exist."""
    with open(ledger, "a") as f:
        f.write(name + "\n")
    while not os.path.exists(gate):
        time.sleep(0.02)
    return name


def noop(i: int) -> int:
    return i
