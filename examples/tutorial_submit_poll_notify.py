"""Tutorial — Submit → Poll → Notify, on trio.

Minimal end-to-end job orchestration with human notification and provenance: console only, no
external infrastructure. Run it as

    python examples/tutorial_submit_poll_notify.py
    ag run examples/tutorial_submit_poll_notify.py:submit_poll_notify \
        --input '{"spec": {"name": "toy-sim", "steps": 3}}'

``AG_DEMO_FAIL_RATE`` (default 0.15) is the chance a fake job fails; when one does, the run asks
whether to retry. ``AG_DEMO_TIME_SCALE`` (default 1) scales the fake job's durations.
"""

from __future__ import annotations

import json
import os
import random
import time

import trio

from aethergraph import Failed, NodeContext, Service, graph_fn, register_context_service, tool
from aethergraph.server import start

# --- 1) Configure the runtime (store under ./.aethergraph unless AETHERGRAPH_HOME says otherwise).
start()

FAIL_RATE = float(os.environ.get("AG_DEMO_FAIL_RATE", "0.15"))
TIME_SCALE = float(os.environ.get("AG_DEMO_TIME_SCALE", "1"))


# --- 2) A tiny external service: a fake job runner, reachable from every node as context.jobs().
class FakeJobRunner(Service):
    """Pretend to submit a remote job and poll until it finishes.

    In a real implementation, call your cloud API here. The simulated lifecycle runs in the
    runtime's service nursery (``spawn``), so it is cancelled when the runtime closes.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, str | None]] = {}

    async def submit(self, spec: dict) -> str:
        job_id = f"job_{int(time.time() * 1000)}_{random.randint(100, 999)}"
        # status: queued → running → (succeeded | failed)
        self._jobs[job_id] = {"status": "queued", "result": None}
        self.spawn(self._simulate, job_id, spec)
        return job_id

    async def poll(self, job_id: str) -> dict[str, str | None]:
        return dict(self._jobs[job_id])

    async def _simulate(self, job_id: str, spec: dict) -> None:
        await trio.sleep(0.5 * TIME_SCALE)
        self._jobs[job_id]["status"] = "running"
        await trio.sleep(1.2 * TIME_SCALE)
        if random.random() >= FAIL_RATE:
            self._jobs[job_id]["status"] = "succeeded"
            self._jobs[job_id]["result"] = f"Result for {spec.get('name', 'demo')}"
        else:
            self._jobs[job_id]["status"] = "failed"
            self._jobs[job_id]["result"] = None


register_context_service("jobs", FakeJobRunner())


# Submitting goes through a tool: tools are the unit of checkpoint and retry.
@tool(outputs=["job_id"])
async def submit_job(spec: dict, *, context: NodeContext) -> str:
    return await context.jobs().submit(spec)


# --- 3) The graph node: submit → poll → notify, with artifacts & memory.
@graph_fn(name="submit_poll_notify")
async def submit_poll_notify(spec: dict, *, context: NodeContext) -> dict:
    ch = context.channel()
    mem = context.memory()
    arts = context.artifacts()
    jobs = context.jobs()

    await ch.send_text("Submitting your job…")
    job_id = (await submit_job(spec=spec, context=context))["job_id"]
    await mem.record(kind="job_submitted", data={"job_id": job_id, "spec": spec}, tags=["demo"])

    # Persist the spec as an artifact.
    spec_ref = await arts.write_text(f"spec_{job_id}.json", content=json.dumps(spec, indent=2))

    # Poll until terminal, with a deadline: a job that never finishes must not hang the run.
    async for _ in context.poll(0.6 * TIME_SCALE, timeout_s=600):
        info = await jobs.poll(job_id)
        status = info.get("status")
        await ch.send_text(f"Status: {status}")
        if status in {"succeeded", "failed"}:
            break

    if status == "succeeded":
        result_text = info.get("result") or "<no result>"
        res_ref = await arts.write_text(f"result_{job_id}.txt", content=result_text)
        await mem.record(kind="job_succeeded", data={"job_id": job_id, "result_ref": res_ref})
        await ch.send_text(f"✅ Job {job_id} finished. Saved result → {res_ref}")
        return {"job_id": job_id, "status": status, "spec_ref": spec_ref, "result_ref": res_ref}

    await mem.record(kind="job_failed", data={"job_id": job_id})
    ans = await ch.ask_text(f"❌ Job {job_id} failed. Retry? (yes/no)")
    if str(ans).strip().lower().startswith("y"):
        # A child node of this run: the retry shows up as submit_poll_notify/submit_poll_notify.
        return await submit_poll_notify(spec=spec, context=context)
    await ch.send_text("Not retrying; stopping here.")
    # Failed(...) ends the run FAILED (the job failed and was not retried) and still hands the
    # outputs back to the caller.
    return Failed(
        f"job {job_id} failed and was not retried",
        outputs={"job_id": job_id, "status": status, "spec_ref": spec_ref},
    )


# --- 4) Tiny runner for local testing.
if __name__ == "__main__":

    async def main() -> None:
        out = await submit_poll_notify(spec={"name": "toy-sim", "steps": 3})
        print("FINAL OUTPUT:\n", out)

    trio.run(main)
