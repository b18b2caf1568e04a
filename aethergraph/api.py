"""Opening runtimes and running graphs from plain Python.

``start()`` sets how runtimes in this process open (store, durability, sidecar). Every runtime
then serves its sidecar while it is open, so another terminal can watch, answer and cancel.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import trio

from aethergraph.runtime.engine import RuntimeConfig
from aethergraph.runtime.engine import open_runtime as _open
from aethergraph.runtime.errors import GraphFailed
from aethergraph.runtime.store.layout import resolve_home
from aethergraph.runtime.store.writer import resolve_durability

from .console import ConsolePrinter, ConsoleSource
from .interrupted import Resumer
from .run_by_id import check_run_id, start_by_id
from .services import registered_services

_DEFAULTS: dict[str, Any] = {}
SIDECAR_ENV = "AETHERGRAPH_SIDECAR"  # "0" turns the sidecar off


class StartInfo(NamedTuple):
    """What ``start()`` configured. The sidecar serves while a runtime is open (its address is
    advertised in the store's runtimes/ folder); start() itself opens nothing."""

    home: str
    durability: str
    sidecar: bool = True
    tcp: str | None = None


def start(
    *,
    home: str | None = None,
    durability: str | None = None,
    answers: list[str] | None = None,
    sidecar: bool | None = None,
    tcp: bool | str | None = None,
) -> StartInfo:
    """Configure the runtimes this process opens (callable before any trio loop exists).

    ``home``: the store (default ``$AETHERGRAPH_HOME`` or ``./.aethergraph``);
    ``durability``: ``strict`` | ``batch`` | ``off``; ``answers``: scripted answers to asks;
    ``sidecar``: serve the sidecar on a 0600 unix socket in the store (default True);
    ``tcp``: also on loopback TCP (True: a free port; or "HOST:PORT"), always with a token.
    """
    if home is not None:
        _DEFAULTS["home"] = home
    if durability is not None:
        _DEFAULTS["durability"] = resolve_durability(durability)
    if answers is not None:
        _DEFAULTS["answers"] = list(answers)
    if sidecar is not None:
        _DEFAULTS["sidecar"] = sidecar
    if tcp:
        _DEFAULTS["sidecar_tcp"] = "127.0.0.1:0" if tcp is True else str(tcp)
    return StartInfo(
        home=str(resolve_home(_DEFAULTS.get("home"))),
        durability=resolve_durability(_DEFAULTS.get("durability")),
        sidecar=_DEFAULTS.get("sidecar", True),
        tcp=_DEFAULTS.get("sidecar_tcp"),
    )


def default_config(**overrides: Any):
    values = dict(_DEFAULTS)
    values.update({k: v for k, v in overrides.items() if v is not None})
    console = values.pop("console", True)
    config = RuntimeConfig(
        home=values.get("home"),
        durability=values.get("durability"),
        answers=list(values.get("answers", [])),
        services=registered_services(),
        answer_sources=[ConsoleSource()] if console else [],
        handle_sigint=values.get("handle_sigint", True),
        sidecar=values.get("sidecar", os.environ.get(SIDECAR_ENV, "1").lower() not in ("0", "off", "no", "false")),
        sidecar_tcp=values.get("sidecar_tcp"),
        resumer=Resumer(),
    )
    return config, (ConsolePrinter() if console else None)


@asynccontextmanager
async def open_runtime(
    *,
    home: str | None = None,
    durability: str | None = None,
    answers: list[str] | None = None,
    console: bool | None = None,
    handle_sigint: bool | None = None,
    sidecar: bool | None = None,
    tcp: bool | str | None = None,
) -> AsyncIterator[Any]:
    """``async with aethergraph.open_runtime() as rt:`` — one runtime for many runs.

    Opened implicitly by a top-level graph call when none is open. On exit every event is on
    disk and every service's background task has ended.
    """
    config, printer = default_config(
        home=home, durability=durability, answers=answers, console=console,
        handle_sigint=handle_sigint, sidecar=sidecar,
        sidecar_tcp=("127.0.0.1:0" if tcp is True else tcp) if tcp else None,
    )
    async with _open(config) as rt:
        if printer is not None:
            rt.subscribe(printer, printer.TYPES)
        yield rt


def run(target: Any, *args: Any, run_id: str | None = None, **inputs: Any) -> Any:
    """Run a graph function to completion from synchronous code; return its outputs.

    Ctrl-C cancels the run cleanly (recorded CANCELLED, everything flushed), then raises
    ``KeyboardInterrupt`` as Python programs do.

    ``run_id``: the run's id, chosen by the caller (``"nightly-2026-12-01"``), which makes the
    call idempotent: a new id starts the run; an interrupted run of that id is resumed; a run
    that ended is not run again — its recorded outputs are returned (a recorded failure is
    raised as ``RecordedFailure``). Other inputs than the ones recorded raise ``RunIdConflict``;
    a run of that id executing elsewhere raises ``RunIdInUse``. (So ``run_id`` cannot be an
    input name of a graph called this way.) See ``aethergraph.run_by_id``.
    """
    target, args, inputs = _upstream_shape(target, args, inputs)
    if run_id is not None:
        check_run_id(run_id)  # a bad id is refused before anything opens

    async def main() -> Any:
        async with open_runtime() as rt:
            if run_id is None:
                try:
                    return await target(*args, **inputs)
                except Exception:
                    if rt.interrupted:
                        raise KeyboardInterrupt from None
                    raise
            return await _run_by_id(rt, target, run_id, args, inputs)

    return trio.run(main)


async def _run_by_id(rt: Any, target: Any, run_id: str, args: tuple, inputs: dict) -> Any:
    if not hasattr(target, "start_run"):
        raise TypeError(f"run(..., run_id=...) needs a @graph_fn or @tool, got {target!r}")
    outcome, _ = await start_by_id(rt, target, run_id, target._inputs(args, inputs))
    if outcome.ok or isinstance(outcome.error, GraphFailed):
        return outcome.outputs
    if rt.interrupted:
        raise KeyboardInterrupt from outcome.error
    raise outcome.error


def _upstream_shape(target: Any, args: tuple, inputs: dict[str, Any]) -> tuple[Any, tuple, dict[str, Any]]:
    """Accept upstream's ``run(fn, inputs={...}, max_concurrency=N)`` shape: ``inputs=`` a dict
    (when the graph has no input of that name) are the inputs; ``max_concurrency`` /
    ``on_error`` are options of a ``@graphify`` graph (they mean nothing for a graph_fn, whose
    concurrency is what its code does: refused rather than ignored)."""
    sig = getattr(target, "signature", None)
    params = sig.parameters if sig is not None else {}
    if isinstance(inputs.get("inputs"), dict) and "inputs" not in params:
        given = inputs.pop("inputs")
        inputs = {**given, **inputs}
    options = {k: inputs.pop(k) for k in ("max_concurrency", "on_error") if k in inputs and k not in params}
    if options:
        if not hasattr(target, "options"):
            raise TypeError(f"run(): {', '.join(options)} is for @graphify graphs; "
                            f"{getattr(target, 'name', target)!r} is not one")
        target = target.options(**options)
    return target, args, inputs


async def run_async(target: Any, *args: Any, **inputs: Any) -> Any:
    """``await aethergraph.run_async(g, **inputs)`` (upstream's name; also its ``inputs={...}``
    shape): the same as awaiting ``g(**inputs)``, in the runtime that is open or a new one."""
    target, args, inputs = _upstream_shape(target, args, inputs)
    return await target(*args, **inputs)
