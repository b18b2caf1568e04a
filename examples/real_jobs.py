"""The tutorial's submit → poll → notify, with a real process job.

The job is a small Python simulation (``examples/sim.py`` is written by nobody: it is the
``SIM`` program below, run as ``python -c``) that prints its progress and, last, its result.
It runs under its own supervisor, in its own session: ``kill -9`` this process while it runs and
the job carries on; ``ag resume RUN`` finds it again by key and collects its result.

    python examples/real_jobs.py
    ag run examples/real_jobs.py:submit_poll_notify --input '{"spec": {"name": "toy-sim", "steps": 5}}'
    ag jobs                        # in another terminal: the job, its state, elapsed, exit code
    ag jobs logs JOB -f            # its output, live
    ag jobs cancel JOB             # SIGTERM to its process group, SIGKILL after its grace

The same graph on a dask.distributed cluster instead (``pip install 'aethergraph[dask]'``): the
simulation then runs as a process on a dask worker, its output followed live from here.

    python examples/real_jobs.py --dask                        # a LocalCluster, started and closed here
    python examples/real_jobs.py --dask tcp://scheduler:8786   # an existing cluster
    AG_DEMO_RUNNER=dask ag run examples/real_jobs.py:submit_poll_notify --input '{"spec": {}}'

``AG_DEMO_STEP_S`` (default 0.3) is how long one simulation step takes; ``AG_DEMO_FAIL=1`` makes
the simulation fail (non-zero exit), and the run then asks whether to retry.
"""

from __future__ import annotations

import json
import os
import sys

import trio

from aethergraph import Failed, NodeContext, graph_fn, register_context_service, tool
from aethergraph.jobs import ProcessJobs
from aethergraph.server import start

start()

# --- 1) The job: any program. This one simulates `steps` steps, printing progress, then its result.
SIM = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
steps, step_s = int(spec.get("steps", 3)), float(os.environ.get("AG_DEMO_STEP_S", "0.3"))
for i in range(1, steps + 1):
    time.sleep(step_s)
    print(f"step {i}/{steps}: energy={1.0 / i:.4f}", flush=True)
if spec.get("fail", os.environ.get("AG_DEMO_FAIL") == "1"):
    print("diverged at the last step", file=sys.stderr)
    sys.exit(3)
print(json.dumps({"name": spec.get("name", "demo"), "energy": round(1.0 / steps, 4)}))
"""

# --- 2) The service: real processes, at most 4 at a time (the rest wait, QUEUED) — or the same
#        protocol on a dask cluster. Nothing below this line knows which.
def jobs_service():
    if "--dask" not in sys.argv and os.environ.get("AG_DEMO_RUNNER") != "dask":
        return ProcessJobs(max_parallel=4)
    from aethergraph.dask_jobs import DaskJobs

    rest = sys.argv[sys.argv.index("--dask") + 1:] if "--dask" in sys.argv else []
    address = rest[0] if rest and not rest[0].startswith("-") else None
    if address or os.environ.get("AETHERGRAPH_DASK_SCHEDULER"):
        return DaskJobs(address)
    # A LocalCluster whose workers are threads of this process: this script has top-level code
    # (start(), this registration) that worker processes started by "spawn" would run again.
    # The job itself is a process on the worker either way.
    return DaskJobs(cluster_kwargs={"n_workers": 1, "threads_per_worker": 4, "processes": False})


register_context_service("jobs", jobs_service())


# Submitting goes through a tool (journaled) with the node's idempotency key: a resumed run
# gets the job it already submitted, never a second one.
@tool(outputs=["job_id"])
async def submit_job(spec: dict, *, context: NodeContext) -> str:
    return await context.jobs().submit(
        {"argv": [sys.executable, "-c", SIM, json.dumps(spec)], "name": f"sim {spec.get('name', '')}",
         "timeout_s": 600, "grace_s": 2},
        key=context.idempotency_key,
    )


# --- 3) The graph node: submit → poll → notify, as in the tutorial.
@graph_fn(name="submit_poll_notify")
async def submit_poll_notify(spec: dict, *, context: NodeContext) -> dict:
    ch = context.channel()
    mem = context.memory()
    arts = context.artifacts()
    jobs = context.jobs()

    await ch.send_text("Submitting your job…")
    job_id = (await submit_job(spec=spec, context=context))["job_id"]
    await mem.record(kind="job_submitted", data={"job_id": job_id, "spec": spec}, tags=["demo"])
    spec_ref = await arts.write_text(f"spec_{job_id}.json", content=json.dumps(spec, indent=2))

    # Poll as the seed does (the job's own output shows progress). `await jobs.wait(job_id)`
    # would park until the job ends instead; either way, cancelling this node ends the job.
    last = None
    async for _ in context.poll(0.5, timeout_s=900):
        info = await jobs.poll(job_id)
        status = info["status"]
        tail = await jobs.logs(job_id, tail=1)
        line = f"Status: {status}" + (f" — {tail[0]}" if tail and status == "running" else "")
        if line != last:
            await ch.send_text(line)
            last = line
        if status in {"succeeded", "failed", "cancelled", "lost"}:
            break

    if status == "succeeded":
        result = json.loads(info["result"])  # the job's last line of output
        res_ref = await arts.write_text(f"result_{job_id}.json", content=json.dumps(result))
        await mem.record(kind="job_succeeded", data={"job_id": job_id, "result_ref": res_ref})
        await ch.send_text(f"✅ Job {job_id} finished: energy {result['energy']}. Saved result → {res_ref}")
        return {"job_id": job_id, "status": status, "spec_ref": spec_ref, "result_ref": res_ref,
                "result": result}

    await mem.record(kind="job_failed", data={"job_id": job_id, "error": info["error"]})
    ans = await ch.ask_text(f"❌ Job {job_id} {status}: {info['error']}\nRetry? (yes/no)")
    if str(ans).strip().lower().startswith("y"):
        # A child node of this run, with a new job (its own key); this demo's retry succeeds.
        return await submit_poll_notify(spec={**spec, "fail": False}, context=context)
    await ch.send_text("Not retrying; stopping here.")
    return Failed(f"job {job_id} {status} and was not retried",
                  outputs={"job_id": job_id, "status": status, "spec_ref": spec_ref})


if __name__ == "__main__":

    async def main() -> None:
        out = await submit_poll_notify(spec={"name": "toy-sim", "steps": 5})
        print("FINAL OUTPUT:\n", out)

    trio.run(main)
