"""What runs on a dask worker for a ``DaskJobs`` job.

Workers import it by name (aethergraph installed on them), or, with ``DaskJobs(ship_code=True)``,
it is shipped to them *by value* (cloudpickle) with every task, so that a worker needs dask only:
so it must import nothing from this project, and only the standard library at import time
(``distributed`` is imported inside the functions, on the worker).

Every job tells the runtime it started with a worker event on ``TOPIC`` (``{"job_id", "state":
"running", "worker", "started"}``); an argv job also sends its output in chunks as it is written
(``{"job_id", "stream", "data"}``), so it can be followed live from the login node. Events are
pushed to the runtime's client by the scheduler (nobody polls), a list of them per event: the
messages of a worker's tasks within ``BATCH_S`` travel together.

An argv job is a process in a session (and process group) of its own on the worker, its output in
files on the worker; the task returns how it ended — exit code, signal, its whole output (up to
``OUTPUT_CAP`` per stream) — as a dict, never by raising, so a failing program is a finished task
with a non-zero exit code and its stderr, and the runtime says FAILED.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time

TOPIC = "aethergraph-jobs"
OUTPUT_CAP = 16 << 20  # bytes of each stream a finished task carries back
CHUNK = 256 << 10  # at most this much output per live event
FLUSH_S = 0.1

# On the worker: job id -> (Popen, cancel request). A worker process runs tasks in threads, and
# ``kill_job`` (sent by ``Client.run``) runs in the same process: this dict is how it finds the
# job's process group. Kept on the worker object, not in this module: each task unpickles its own
# copy of a module shipped by value.
_REGISTRY_ATTR = "_aethergraph_jobs"


def _registry(worker) -> dict:
    reg = getattr(worker, _REGISTRY_ATTR, None)
    if reg is None:
        reg = {}
        setattr(worker, _REGISTRY_ATTR, reg)
    return reg


def _worker():
    from distributed import get_worker

    return get_worker()


_BATCH_ATTR = "_aethergraph_events"
BATCH_S = 0.02


def _event(worker, msg: dict) -> None:
    """Queue ``msg`` for the runtime. Events of all the tasks of a worker go out together, one
    scheduler event per ``BATCH_S`` (a list), not one per job: with tiny jobs, one event each
    costs the scheduler and the worker's loop more than the jobs do. A job that ends before
    its "running" message went out sends one message, its end, instead of two."""
    try:
        box = getattr(worker, _BATCH_ATTR, None)
        if box is None:
            box = {"lock": threading.Lock(), "msgs": [], "armed": False}
            setattr(worker, _BATCH_ATTR, box)
        with box["lock"]:
            state = msg.get("state")
            unsent = box.setdefault("running", {})  # (a box made by an older copy of this module)
            if state == "ended":
                queued = unsent.pop(msg["job_id"], None)
                if queued is not None:  # still unsent: it becomes the end
                    queued.update(msg)
                    return
            elif state == "running":
                unsent[msg["job_id"]] = msg
            box["msgs"].append(msg)
            if box["armed"]:
                return
            box["armed"] = True
        worker.loop.add_callback(_arm, worker, box)
    except Exception:  # the runtime learns the end from the task itself; an event is a hint
        pass


def _arm(worker, box: dict) -> None:
    """On the worker's event loop: send the batch a moment from now."""
    import asyncio

    asyncio.get_running_loop().call_later(BATCH_S, _flush, worker, box)


def _flush(worker, box: dict) -> None:
    with box["lock"]:
        msgs, box["msgs"], box["armed"] = box["msgs"], [], False
        box.setdefault("running", {}).clear()
    if msgs:
        try:
            worker.log_event(TOPIC, msgs)
        except Exception:
            pass


def resolve(path: str):
    """``pkg.module:attr.attr`` -> the object."""
    mod, _, attr = path.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def run_callable(job_id: str, fn: str, args: list, kwargs: dict):
    """Call ``fn``; tell the runtime it started and, when it returns, that it ended, with its
    value as JSON text when that is small and reads back the same (``result``): the runtime
    records the end from the message and need not fetch the task's result from the cluster.
    Otherwise the message says ``result`` is not there, and the runtime fetches it."""
    worker = _worker()
    started = time.time()
    _event(worker, {"job_id": job_id, "state": "running", "worker": worker.address,
                    "started": started})
    try:
        value = resolve(fn)(*args, **kwargs)
    except Exception as exc:  # say where it failed (the started event may come after the end)
        exc.add_note(WORKER_NOTE + worker.address)
        raise
    end = {"job_id": job_id, "state": "ended", "worker": worker.address, "started": started,
           "ended": time.time()}
    text = _inline(value)
    if text is not None:
        end["result"] = text
    _event(worker, end)
    return value


WORKER_NOTE = "aethergraph: on worker "
INLINE_MAX = 16 << 10  # characters of JSON a result may have to travel in the end message


def _inline(value) -> str | None:
    """``value`` as JSON text, if it is small and decodes to an equal value (a tuple, a dict
    with int keys or a NaN would not: those are fetched as the task's result)."""
    if value is None or type(value) in (bool, int, float, str):
        if type(value) is str and len(value) > INLINE_MAX:
            return None
    elif type(value) not in (list, dict):
        return None
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    if len(text) > INLINE_MAX:
        return None
    if type(value) in (list, dict) and json.loads(text) != value:
        return None
    return text


def run_argv(job_id: str, spec: dict) -> dict:
    """Run ``spec["argv"]`` (fields of JobSpec) to its end; return how it ended."""
    worker = _worker()
    started = time.time()
    folder = tempfile.mkdtemp(prefix=f"ag-{job_id}-")
    paths = {s: os.path.join(folder, s) for s in ("stdout", "stderr")}
    files = {s: open(p, "wb") for s, p in paths.items()}
    env = dict(os.environ) if spec.get("inherit_env", True) else {}
    env.update(spec.get("env") or {})
    argv = spec["argv"]
    out: dict = {"exit_code": None, "signal": None, "error": "", "timed_out": False,
                 "cancelled_by": "", "started": started, "worker": worker.address}
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", argv[0]] if spec.get("shell") else argv,
            cwd=spec.get("cwd") or None, env=env, stdin=subprocess.DEVNULL,
            stdout=files["stdout"], stderr=files["stderr"], start_new_session=True,
        )
    except OSError as exc:
        out["error"] = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        return _finish(out, paths, folder, files)
    finally:
        for f in files.values():
            f.close()
    cancel: dict = {}
    reg = _registry(worker)
    reg[job_id] = (proc, cancel)
    _event(worker, {"job_id": job_id, "state": "running", "worker": worker.address,
                    "started": started})
    readers = {s: open(p, "rb") for s, p in paths.items()}
    timeout = spec.get("timeout_s")
    deadline = None if timeout is None else time.monotonic() + timeout
    grace = float(spec.get("grace_s", 5.0))
    try:
        while proc.poll() is None:
            _ship(worker, job_id, readers)
            if deadline is not None and time.monotonic() >= deadline and not out["timed_out"]:
                out["timed_out"] = True
                _end_group(proc.pid, grace)
            time.sleep(FLUSH_S)
        _ship(worker, job_id, readers)
    finally:
        reg.pop(job_id, None)
        for f in readers.values():
            f.close()
    rc = proc.returncode
    if rc < 0:
        out["signal"] = -rc
    else:
        out["exit_code"] = rc
    out["cancelled_by"] = cancel.get("by", "")
    if out["timed_out"]:
        out["error"] = f"timed out after {timeout:g}s"
    return _finish(out, paths, folder, None)


def _ship(worker, job_id: str, readers: dict) -> None:
    """Send what the job wrote since the last call, each chunk with the byte it starts at: the
    runtime writes it there, so a chunk that reaches it after the job's final output (which
    carries the same bytes) is written over them instead of after them."""
    for stream, f in readers.items():
        at = f.tell()
        data = f.read(CHUNK)
        while data:
            _event(worker, {"job_id": job_id, "stream": stream, "data": data, "at": at})
            at += len(data)
            data = f.read(CHUNK)


def _finish(out: dict, paths: dict, folder: str, _files) -> dict:
    for stream, p in paths.items():
        try:
            with open(p, "rb") as f:
                data = f.read(OUTPUT_CAP + 1)
        except OSError:
            data = b""
        out[stream] = data[:OUTPUT_CAP]
        out[stream + "_truncated"] = len(data) > OUTPUT_CAP
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["rusage"] = {"user_s": ru.ru_utime, "system_s": ru.ru_stime, "max_rss_kb": ru.ru_maxrss}
    out["ended"] = time.time()
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _end_group(pgid: int, grace_s: float) -> None:
    """SIGTERM to the group now, SIGKILL to what is left after ``grace_s`` (in a thread: the
    caller may be the worker's event loop, which must not sleep)."""
    _killpg(pgid, signal.SIGTERM)

    def later() -> None:
        time.sleep(grace_s)
        _killpg(pgid, signal.SIGKILL)

    threading.Thread(target=later, name=f"ag-kill-{pgid}", daemon=True).start()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_job(job_id: str, grace_s: float, by: str = "", dask_worker=None) -> bool:
    """Sent with ``Client.run`` to the worker running ``job_id``: end its process group.
    Returns whether this worker had it."""
    reg = _registry(dask_worker) if dask_worker is not None else {}
    entry = reg.get(job_id)
    if entry is None:
        return False
    proc, cancel = entry
    cancel["by"] = by or "cancel"
    _end_group(proc.pid, grace_s)
    return True
