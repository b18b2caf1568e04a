"""The crash matrix: kill -9 a real process recording in a loop, resume it, count what broke.

    python bench/fault_matrix.py                 # `just fault`: 10 runs per durability mode
    python bench/fault_matrix.py --runs 2 --json # the short version the test suite runs

For each durability mode (strict, batch) and each run: ``ag run`` a graph that records memory
events in a tight loop and calls a side-effecting ``@tool`` every so often; SIGKILL it at a
random moment; then ``ag resume`` it to the end and ``ag check`` the store. Per kill point:

- **acked lost**: events whose ``record()`` had returned (the child notes each acknowledgement,
  with its time, in a shared memory-mapped file that survives the kill) but that are not in the
  log after the kill. Must be 0 in ``strict``; in ``batch``, **oldest lost** (ms between the
  acknowledgement of the oldest lost event and the kill) must be within the documented window
  (``WINDOW_MS``, README "The store");
- **tool again**: a tool call executed a second time on resume (same idempotency key). Must be 0
  in ``strict``; in ``batch`` a call in the last moments may be, which is why services take the
  key;
- **effects twice**: one step's side effect done under two different keys (the key would not
  have protected it). Must be 0;
- **events after resume**: every loop index in the log exactly once;
- **check**: ``ag check`` exit status after the resume. Must be 0.

Exit status 1 if any promise broke.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aethergraph.runtime import events as ev  # noqa: E402
from aethergraph.runtime.store.logfile import read_events  # noqa: E402
from tests.agproc import ag_cmd  # noqa: E402

# The loss after a kill -9 in `batch`, as documented in README "The store": what was
# acknowledged in the last WINDOW_MS before the kill may be lost, nothing older. (The writer
# holds emitters to 20 ms; the batch on its way to disk adds one fsync, slow on a busy disk.)
WINDOW_MS = 100
SLOTS = 1 << 20

WORKER = textwrap.dedent(
    """
    import mmap, os, struct, time
    from aethergraph import graph_fn, tool

    SLOTS = 1 << 20
    _mm = []

    def acks():
        if not _mm:
            fd = os.open(os.environ["ACKS"], os.O_RDWR)
            _mm.append(mmap.mmap(fd, 8 * (SLOTS + 1)))
        return _mm[0]

    @tool(name="effect")
    async def effect(k: int, *, context):
        # The side effect: one line per execution, with the key a service would dedupe on.
        with open(os.environ["EFFECTS"], "a") as f:
            f.write(f"{k} {context.idempotency_key}\\n")
        return k

    @graph_fn(name="worker")
    async def worker(n: int, every: int, *, context):
        mem = context.memory()
        mm = acks()
        pack = struct.pack_into
        for i in range(n):
            if i % every == 0:
                await effect(i // every)
            await mem.record("w", {"i": i})
            # Acknowledged: record() returned. Note when, where the parent can read it after
            # the kill (a shared mapping: no syscall, survives SIGKILL).
            pack("<d", mm, 8 * (1 + i % SLOTS), time.time())
            pack("<q", mm, 0, i + 1)
        return {"n": n}
    """
)

PLAN = {  # loop length, tool every, kill delay range (s) after the first acknowledgement
    "strict": (4_000, 100, (0.05, 0.8)),
    "batch": (150_000, 5_000, (0.05, 0.6)),
}


def ag(*args: str, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*ag_cmd(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def loop_indexes(path: Path) -> list[int]:
    return [e.data["i"] for e in read_events(path, warn=False)
            if isinstance(e, ev.MemoryRecorded) and e.kind == "w"]


def one(durability: str, run_no: int, work: Path, rng: random.Random) -> dict:
    n, every, (lo, hi) = PLAN[durability]
    home = work / "store"
    script = work / "worker.py"
    script.write_text(WORKER)
    acks, acks_resume, effects = work / "acks.bin", work / "acks-resume.bin", work / "effects.txt"
    for f in (acks, acks_resume):
        with open(f, "wb") as fh:
            fh.truncate(8 * (SLOTS + 1))
    env = {**os.environ, "AETHERGRAPH_HOME": str(home), "ACKS": str(acks), "EFFECTS": str(effects),
           "PYTHONPATH": str(ROOT)}
    env.pop("AETHERGRAPH_FAULT", None)
    child = subprocess.Popen(
        [*ag_cmd(), "run", f"{script}:worker", "--input", json.dumps({"n": n, "every": every}),
         "--durability", durability],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    fd = os.open(acks, os.O_RDONLY)
    mm = mmap.mmap(fd, 8 * (SLOTS + 1), prot=mmap.PROT_READ)
    deadline = time.monotonic() + 120
    while struct.unpack_from("<q", mm, 0)[0] == 0:
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start: {child.stderr.read().decode()[-2000:]}")
        time.sleep(0.002)
    delay = rng.uniform(lo, hi)
    time.sleep(delay)
    kill_t = time.time()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    acked = struct.unpack_from("<q", mm, 0)[0]
    ack_ts = [struct.unpack_from("<d", mm, 8 * (1 + i % SLOTS))[0] for i in range(acked)]
    mm.close()
    os.close(fd)
    if child.returncode != -signal.SIGKILL:
        raise SystemExit(f"worker ended by itself ({child.returncode}) before the kill; lengthen the loop")

    (log,) = (home / "runs").rglob("*.jsonl")
    present = set(loop_indexes(log))
    lost = [i for i in range(acked) if i not in present]
    oldest_ms = max((kill_t - ack_ts[i]) * 1000 for i in lost) if lost else 0.0

    resumed = ag("resume", log.stem, env={**env, "ACKS": str(acks_resume)}, cwd=work)
    after = loop_indexes(log)
    lines = [line.split() for line in effects.read_text().splitlines()] if effects.exists() else []
    keys_by_step: dict[str, list[str]] = {}
    for k, key in lines:
        keys_by_step.setdefault(k, []).append(key)
    check = ag("check", env=env, cwd=work)
    row = {
        "durability": durability,
        "run": run_no,
        "kill_after_s": round(delay, 3),
        "acked": acked,
        "acked_lost": len(lost),
        "oldest_lost_ms": round(oldest_ms, 1),
        "within_window": oldest_ms <= WINDOW_MS,
        "tool_again": sum(len(v) - len(set(v)) for v in keys_by_step.values()),
        "effects_twice": sum(len(set(v)) > 1 for v in keys_by_step.values()),
        "resumed_ok": resumed.returncode == 0,
        "events_after_resume_ok": sorted(after) == list(range(n)),
        "check_failures": 0 if check.returncode == 0 else 1,
    }
    if not row["resumed_ok"]:
        row["resume_error"] = resumed.stderr.strip().splitlines()[-1:] if resumed.stderr else ""
    if row["check_failures"]:
        row["check_output"] = check.stdout[-500:]
    return row


def broken(row: dict) -> list[str]:
    out = []
    if row["acked_lost"] and (row["durability"] == "strict" or not row["within_window"]):
        out.append("acknowledged events lost")
    if row["durability"] == "strict" and row["tool_again"]:
        out.append("a tool ran again in strict")
    if row["effects_twice"]:
        out.append("a side effect ran under two keys")
    if not row["resumed_ok"] or not row["events_after_resume_ok"]:
        out.append("resume did not complete the log")
    if row["check_failures"]:
        out.append("ag check failed")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="kill points per durability mode")
    p.add_argument("--modes", default="strict,batch")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="also print one JSON object per row")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    rows = []
    for mode in args.modes.split(","):
        for i in range(args.runs):
            work = Path(tempfile.mkdtemp(prefix=f"ag-fault-{mode}-"))
            try:
                row = one(mode, i + 1, work, rng)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    cols = ["durability", "run", "kill_after_s", "acked", "acked_lost", "oldest_lost_ms",
            "tool_again", "effects_twice", "events_after_resume_ok", "check_failures"]
    print(f"\nfault matrix (seed {seed}): kill -9 at a random point, then ag resume, then ag check")
    print(f"batch window documented: {WINDOW_MS} ms (acknowledged events older than that are never lost)")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
    bad = [(r, broken(r)) for r in rows if broken(r)]
    for mode in args.modes.split(","):
        mine = [r for r in rows if r["durability"] == mode]
        print(f"{mode}: {len(mine)} kills, acked lost {sum(r['acked_lost'] for r in mine)} "
              f"(worst oldest {max((r['oldest_lost_ms'] for r in mine), default=0)} ms), "
              f"tool again {sum(r['tool_again'] for r in mine)}, "
              f"effects twice {sum(r['effects_twice'] for r in mine)}, "
              f"check failures {sum(r['check_failures'] for r in mine)}")
    for r, why in bad:
        print(f"BROKEN {r['durability']} run {r['run']}: {', '.join(why)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
