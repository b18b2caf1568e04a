"""``ag run TARGET``: one top-level run, its messages on stdout, its outcome at the end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from .main import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, CliError


def parse_inputs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise CliError(f"--input is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"--input must be a JSON object, got {type(value).__name__}")
    return value


def _entrypoint(target: str) -> str:
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where:
        return f"{Path(where).expanduser().resolve()}:{attr}"
    return target


def cmd_run(args: Any) -> int:
    from ..targets import TargetError, load_target

    inputs = parse_inputs(args.input)
    try:
        fn = load_target(args.target)
    except TargetError as exc:
        raise CliError(str(exc)) from None
    try:
        fn.signature.bind(**inputs, **({"context": None} if fn.wants_context else {}))
    except TypeError as exc:
        raise CliError(f"inputs do not fit {fn.name}{fn.signature}: {exc}") from None

    import trio

    from ..api import open_runtime

    outcome = None
    interrupted = False

    async def main() -> None:
        nonlocal outcome, interrupted
        async with open_runtime(home=args.home, durability=args.durability, answers=args.answer) as rt:
            outcome = await fn.start_run(rt, inputs, entrypoint=_entrypoint(args.target))
            interrupted = rt.interrupted

    try:
        trio.run(main)
    except KeyboardInterrupt:
        interrupted = True
    if outcome is None:
        print("ag: interrupted before the run finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    return report(outcome, interrupted, as_json=args.json)


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
