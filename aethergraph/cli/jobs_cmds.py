"""``ag jobs``: the process jobs runs submitted, their output, and cancelling one.

    ag jobs [--run RUN] [--json]      jobs newest first, with their state now
    ag jobs logs JOB [-f] [--stderr]  a job's output (-f: follow until the job ends)
    ag jobs cancel JOB [--grace S]    SIGTERM to the job's process group, SIGKILL after S

The list comes from the index (what the runs recorded); the state of a job not yet ended there
is read from its folder, which its supervisor keeps current even when no runtime is alive.
Nothing here needs a live runtime; cancelling goes to the job's supervisor directly (a cluster
job's, through its scheduler to its worker).
"""

from __future__ import annotations

import getpass
import socket
import sys
import time
from typing import Any

import msgspec

from aethergraph.runtime.describe import dur
from aethergraph.runtime.exits import EXIT_OK, EXIT_RUN_FAILED
from aethergraph.runtime.jobs.control import request_cancel, wait_terminal
from aethergraph.runtime.jobs.store import JobStore, UnknownJob
from aethergraph.runtime.store.index import Index, job_rows

from .history_cmds import _layout, said_all, table
from .main import CliError

TERMINAL = ("succeeded", "failed", "cancelled", "lost")


def _store(home: str | None):
    layout = _layout(home)
    return layout, JobStore(layout.home)


def _job(store: Any, job_id: str):
    try:
        return store.read(job_id)
    except UnknownJob as exc:
        raise CliError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise CliError(f"job {job_id}: unreadable state.json: {exc}") from None


def cmd_jobs(args: Any) -> int:
    sub = getattr(args, "jobs_command", None)
    if sub == "logs":
        return cmd_logs(args)
    if sub == "cancel":
        return cmd_cancel(args)
    return cmd_list(args)


def cmd_list(args: Any) -> int:
    layout, store = _store(args.home)
    index = Index(layout)
    try:
        index.catch_up()
        rows = job_rows(index, run_id=args.run)
    finally:
        index.close()
    now = time.time()
    for r in rows:
        r["worker"] = ""
        # The folder knows better than the last event; for a cluster job it also says which
        # worker runs (or ran) it.
        if r["state"] not in TERMINAL or r["runner"] == "dask":
            try:
                st = store.read(r["job_id"])
            except Exception:
                continue
            r.update(state=st.state.value, started=st.started, ended=st.ended,
                     exit_code=st.exit_code, error=st.error, pid=st.pid, worker=st.worker)
        start = r["started"]
        r["elapsed_s"] = None if start is None else (r["ended"] or now) - start
    if said_all(args, rows, "no jobs" + (f" in run {args.run}" if args.run else "")):
        return EXIT_OK
    where = any(r["worker"] for r in rows)  # a WORKER column only when a cluster ran some
    out = [
        [r["job_id"], r["state"].upper(), "" if r["exit_code"] is None else str(r["exit_code"]),
         dur(r["elapsed_s"]), r["run_id"], r["node"], _argv(r["argv"], r["name"])]
        + ([_argv([r["worker"]], "")] if where else [])
        for r in rows
    ]
    print(table(out, ["JOB", "STATE", "EXIT", "ELAPSED", "RUN", "NODE", "COMMAND"]
                + (["WORKER"] if where else [])))
    return EXIT_OK


def _argv(argv: list[str], name: str) -> str:
    text = name or " ".join(argv)
    text = "".join(c if c.isprintable() else "?" for c in text)  # untrusted text
    return text if len(text) <= 60 else text[:57] + "..."


def cmd_logs(args: Any) -> int:
    _, store = _store(args.home)
    st = _job(store, args.job_id)
    stream = "stderr" if args.stderr else "stdout"
    path = store.output_path(args.job_id, stream)
    out = sys.stdout.buffer
    while not path.exists():  # the supervisor creates it when it starts the job
        if st.terminal or not args.follow:
            return EXIT_OK
        time.sleep(0.1)
        st = store.read(args.job_id)
    with open(path, "rb") as f:
        if args.tail is not None:
            lines = store.tail(args.job_id, args.tail, stream)
            out.write("".join(line + "\n" for line in lines).encode())
            f.seek(0, 2)
        else:
            out.write(f.read())
        out.flush()
        delay = 0.05
        while args.follow and not st.terminal:
            data = f.read()
            if data:
                out.write(data)
                out.flush()
                delay = 0.05
            else:
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
                st = store.read(args.job_id)
        if args.follow:
            out.write(f.read())
            out.flush()
            print(f"job {args.job_id} {st.state.value}"
                  + ("" if st.exit_code is None else f" (exit code {st.exit_code})"), file=sys.stderr)
    return EXIT_OK


def cmd_cancel(args: Any) -> int:
    _, store = _store(args.home)
    st = _job(store, args.job_id)
    if st.terminal and st.state.value != "lost":
        print(f"job {args.job_id} already ended: {st.state.value}")
        return EXIT_OK
    by = f"ag jobs cancel ({getpass.getuser()}@{socket.gethostname()})"
    grace = args.grace if args.grace is not None else store.read_spec(args.job_id).grace_s
    if grace < 0:
        raise CliError(f"--grace must be >= 0, got {grace}")
    try:
        request_cancel(store, args.job_id, grace_s=grace, by=by)
    except RuntimeError as exc:  # a cluster job whose scheduler cannot be reached
        raise CliError(str(exc)) from None
    st = wait_terminal(store, args.job_id, grace + 5)
    print(f"job {args.job_id} {st.state.value}")
    return EXIT_OK if st.state.value == "cancelled" else EXIT_RUN_FAILED
