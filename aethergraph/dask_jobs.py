"""Jobs on a dask.distributed cluster, behind the same ``context.jobs()`` as ``ProcessJobs``.

    from aethergraph.dask_jobs import DaskJobs
    register_context_service("jobs", DaskJobs())                          # a LocalCluster
    register_context_service("jobs", DaskJobs("tcp://scheduler:8786"))    # an existing cluster
    register_context_service("jobs", DaskJobs(cluster=SLURMCluster(...))) # dask-jobqueue

    job_id = await context.jobs().submit(
        {"fn": "mypkg.sim:run", "args": [3], "kwargs": {"steps": 100},
         "resources": {"GPU": 1}, "priority": 10, "timeout_s": 3600},
        key=context.idempotency_key)
    status = await context.jobs().wait(job_id)   # status.result: what run() returned
    # or {"argv": ["python", "sim.py"], ...}: a process on a worker, its output followed live

With no address (and no ``AETHERGRAPH_DASK_SCHEDULER`` in the environment) a LocalCluster is
started on first use and closed with the runtime. ``distributed`` is imported on first use:
``pip install 'aethergraph[dask]'``. See ``runtime/jobs/dask_runner.py`` for how trio and dask
share the process, and how jobs outlive a runtime killed with ``kill -9``.
"""

from __future__ import annotations

from typing import Any

from aethergraph.runtime.jobs.dask_runner import DaskRunner

from .jobs import ProcessJobs


class DaskJobs(ProcessJobs):
    """The job protocol of ``ProcessJobs`` (submit, status, poll, wait, cancel, logs, follow)
    on a dask.distributed cluster; the cluster queues (there is no ``max_parallel``).

    The workers import the small worker-side module (``aethergraph.runtime.jobs.dask_worker``), so they need
    ``aethergraph[dask]`` installed, as they need the packages of the callables they run;
    ``ship_code=True`` sends it with every task instead, for workers with dask only."""

    def __init__(self, address: str | None = None, *, cluster: Any = None,
                 cluster_kwargs: dict | None = None, client_kwargs: dict | None = None,
                 ship_code: bool = False) -> None:
        if address is not None and cluster is not None:
            raise ValueError("give a scheduler address or a cluster object, not both")
        if address is not None and not (isinstance(address, str) and address.strip()):
            raise ValueError(f"address must be a scheduler address like 'tcp://host:8786', got {address!r}")
        super().__init__()
        self.address = address
        self.cluster = cluster
        self.cluster_kwargs = cluster_kwargs
        self.client_kwargs = client_kwargs
        self.ship_code = ship_code

    def _make_runner(self, rt: Any):
        return DaskRunner(rt, address=self.address, cluster=self.cluster,
                          cluster_kwargs=self.cluster_kwargs, client_kwargs=self.client_kwargs,
                          ship_code=self.ship_code)


__all__ = ["DaskJobs"]
