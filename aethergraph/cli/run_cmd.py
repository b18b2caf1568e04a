"""``ag run TARGET``: one top-level run, its messages on stdout, its outcome at the end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
import trio

from aethergraph.runtime.exits import EXIT_HUNG_UP, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
from aethergraph.runtime.frontend import entrypoint, parse_inputs
from aethergraph.runtime.ids import new_run_id
from aethergraph.runtime.store.layout import StoreLayout

from ..api import open_runtime
from ..detach import DetachFailed, start
from ..run_by_id import RunIdError, recorded_outcome, start_by_id
from ..run_by_id import plan as plan_by_id
from ..targets import TargetError, check_inputs, load_target
from .main import CliError


def read_inputs(args: Any) -> dict[str, Any]:
    """``--input-file`` (a JSON object; ``-`` reads stdin), then ``--input`` keys over it."""
    inputs: dict[str, Any] = {}
    path = getattr(args, "input_file", None)
    if path is not None:
        what = "--input-file" if path == "-" else f"--input-file {path}"
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise CliError(f"{what}: {exc.strerror or exc}") from None
        inputs = parse_inputs(data, what)
    inputs.update(parse_inputs(args.input))
    return inputs


HUNG_UP_REASON = "terminal hung up (SIGHUP)"


async def watch_hangup(rt: Any, hung_up: list[bool], *, task_status: Any) -> None:
    """A terminal (or SSH login) that goes away sends SIGHUP. Its default action would kill the
    process mid-run, leaving the run looking alive until someone notices the pid is gone; here
    the runs end CANCELLED with the hang-up as their reason, and flushed. What they print from
    then on goes to /dev/null (writes to a hung-up terminal fail)."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            if not hung_up:
                hung_up.append(True)
                devnull = os.open(os.devnull, os.O_WRONLY)
                for fd in (1, 2):
                    os.dup2(devnull, fd)
                os.close(devnull)
            rt.cancel_all(HUNG_UP_REASON, by="signal")


def cmd_run(args: Any) -> int:
    inputs = read_inputs(args)
    try:
        fn = load_target(args.target)
    except TargetError as exc:
        raise CliError(str(exc)) from None
    if args.max_concurrency is not None:
        if not hasattr(fn, "options"):
            raise CliError(f"--max-concurrency is for @graphify graphs; {fn.name} is a {fn.kind}")
        fn = fn.options(max_concurrency=args.max_concurrency)
    check_inputs(fn, inputs)  # UsageError: exit 2 before anything opens
    plan = None
    if args.run_id is not None:
        plan = _plan(args, fn, inputs)
        if plan.action == "recorded":  # it ran before: its outcome, and nothing runs
            return _report_recorded(recorded_outcome(plan, args.run_id), as_json=args.json)
    if args.detach:
        return _detach(args, fn, inputs)
    if plan is not None and plan.action == "resume":
        print(f"run {args.run_id} was interrupted: resuming it", file=sys.stderr)

    outcome = None
    interrupted = False
    hung_up: list[bool] = []

    async def main() -> None:
        nonlocal outcome, interrupted
        async with open_runtime(home=args.home, durability=args.durability, answers=args.answer) as rt:
            await rt.service_nursery.start(watch_hangup, rt, hung_up)
            if args.run_id is None:
                outcome = await fn.start_run(rt, inputs, entrypoint=entrypoint(args.target))
            else:
                outcome, _ = await start_by_id(rt, fn, args.run_id, inputs, entrypoint=entrypoint(args.target))
            interrupted = rt.interrupted

    try:
        trio.run(main)
    except KeyboardInterrupt:
        interrupted = True
    except RunIdError as exc:  # another process took the id between the check and the start
        raise CliError(str(exc)) from None
    if hung_up:
        return EXIT_HUNG_UP
    if outcome is None:
        print("ag: interrupted before the run finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    return report(outcome, interrupted, as_json=args.json)


def _report_recorded(outcome: Any, *, as_json: bool) -> int:
    """A run that ended before: its recorded outcome, said so; nothing ran."""
    if as_json:
        print(msgspec.json.encode({
            "run_id": outcome.run_id, "status": outcome.status, "outputs": outcome.outputs,
            "error": None if outcome.error is None else {"type": type(outcome.error).__name__,
                                                         "message": str(outcome.error)},
            "recorded": True,
        }, enc_hook=repr).decode())
    elif outcome.outputs is not None or outcome.ok:
        print(msgspec.json.format(msgspec.json.encode(outcome.outputs, enc_hook=repr), indent=2).decode())
    line = f"run {outcome.run_id} {outcome.status} (recorded earlier; nothing ran again)"
    err = outcome.error
    if err is not None:
        why = getattr(err, "error", None) or f"{type(err).__name__}: {err}"
        line += f": {why}; `ag retry {outcome.run_id}` starts a new attempt"
    print(line, file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_RUN_FAILED


def _plan(args: Any, fn: Any, inputs: dict[str, Any]) -> Any:
    try:
        return plan_by_id(StoreLayout.at(args.home), args.run_id, fn.name, inputs)
    except RunIdError as exc:
        raise CliError(str(exc)) from None


def _detach(args: Any, fn: Any, inputs: dict[str, Any]) -> int:
    """Start the run in a process of its own session; print its id and how to follow it."""
    layout = StoreLayout.at(args.home).ensure()
    run_id = args.run_id or new_run_id()
    child = ["run", entrypoint(args.target), "--run-id", run_id, "--home", str(layout.home),
             "--input", msgspec.json.encode(inputs).decode()]
    if args.max_concurrency is not None:
        child += ["--max-concurrency", str(args.max_concurrency)]
    if args.durability:
        child += ["--durability", args.durability]
    for a in args.answer:
        child += ["--answer", a]
    try:
        d = start(layout, run_id, child)
    except DetachFailed as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(msgspec.json.encode({"run_id": run_id, "pid": d.pid, "host": d.host, "output": str(d.output),
                                   "started": d.started}).decode())
        return EXIT_OK
    state = "started" if d.started else "starting"
    print(run_id)
    print(f"run {run_id} {state} in process {d.pid} of its own (a hang-up does not reach it)\n"
          f"  ag attach {run_id}   follow it and answer its asks (Ctrl-C detaches; the run goes on)\n"
          f"  ag tail {run_id}     follow its events\n"
          f"  output: {d.output}", file=sys.stderr)
    return EXIT_OK


def report(outcome: Any, interrupted: bool, *, as_json: bool) -> int:
    err = outcome.error
    # The leaf exception and its node, as the run's log records it (not "ExceptionGroup").
    info = getattr(outcome, "error_info", None)
    kind, message = (info.type, info.message) if info is not None else (type(err).__name__, str(err))
    if as_json:
        print(msgspec.json.encode({
            "run_id": outcome.run_id,
            "status": outcome.status,
            "outputs": outcome.outputs,
            "error": None if err is None else {"type": kind, "message": message},
        }, enc_hook=repr).decode())
    elif outcome.outputs is not None or outcome.ok:
        print(msgspec.json.format(msgspec.json.encode(outcome.outputs, enc_hook=repr), indent=2).decode())
    line = f"run {outcome.run_id} {outcome.status}"
    if err is not None:
        line += f": {kind}: {message}"
    print(line, file=sys.stderr)
    if outcome.ok:
        return EXIT_OK
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_RUN_FAILED
