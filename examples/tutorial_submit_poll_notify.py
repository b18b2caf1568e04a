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

    In a real implementation, call your cloud API here. Like a real one, it outlives the
    process that submitted a job: jobs are kept in the store's kv, so a run resumed after a
    crash can still poll its job, and ``submit`` is idempotent by key, so a re-executed
    submission returns the job it already made. The simulated lifecycle runs in the runtime's
    service nursery (``spawn``), so it is cancelled when the runtime closes — and picked up
    again by whichever process polls the job next.
    """

    TERMINAL = {"succeeded", "failed"}

    def __init__(self) -> None:
        self._simulating: set[str] = set()

    def _kv(self):
        return self.context.kv("fake-jobs")

    async def submit(self, spec: dict, *, key: str | None = None) -> str:
        kv = self._kv()
        if key and (known := await kv.get(f"key:{key}")):
            return known
        job_id = f"job_{int(time.time() * 1000)}_{random.randint(100, 999)}"
        # status: queued → running → (succeeded | failed)
        await kv.set(job_id, {"status": "queued", "result": None, "submitted": time.time(),
                              "name": spec.get("name", "demo"), "fail": random.random() < FAIL_RATE})
        if key:
            await kv.set(f"key:{key}", job_id)
        await kv.list_append_unique("submitted", [job_id])
        self._simulate_in_background(job_id, kv)
        return job_id

    async def poll(self, job_id: str) -> dict[str, str | None]:
        kv = self._kv()
        job = await kv.get(job_id)
        if job is None:
            raise KeyError(f"unknown job {job_id}")
        if job["status"] not in self.TERMINAL and job_id not in self._simulating:
            self._simulate_in_background(job_id, kv)  # its simulator died with another process
        return {"status": job["status"], "result": job["result"]}

    def _simulate_in_background(self, job_id: str, kv) -> None:
        self._simulating.add(job_id)
        self.spawn(self._simulate, job_id, kv)

    async def _simulate(self, job_id: str, kv) -> None:
        try:
            job = await kv.get(job_id)
            age = time.time() - job["submitted"]
            await trio.sleep(max(0.0, 0.5 * TIME_SCALE - age))
            job["status"] = "running"
            await kv.set(job_id, job)
            await trio.sleep(max(0.0, 1.7 * TIME_SCALE - age - 0.5 * TIME_SCALE))
            job["status"] = "failed" if job["fail"] else "succeeded"
            job["result"] = None if job["fail"] else f"Result for {job['name']}"
            await kv.set(job_id, job)
        finally:
            self._simulating.discard(job_id)


register_context_service("jobs", FakeJobRunner())


# Submitting goes through a tool: tools are the unit of checkpoint and retry. A resumed run
# replays the tool's recorded result; the idempotency key covers a crash that strikes after the
# service took the job but before the result reached the log.
@tool(outputs=["job_id"])
async def submit_job(spec: dict, *, context: NodeContext) -> str:
    return await context.jobs().submit(spec, key=context.idempotency_key)


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
