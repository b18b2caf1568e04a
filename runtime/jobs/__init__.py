"""Real jobs: processes that outlive the runtime that started them.

``protocol`` is the shape every runner shares (JobSpec, JobStatus, JobState), ``store`` the job
folders in the store, ``supervise`` the per-job supervisor process, ``runner`` the runtime side
(queue, watcher, waits). The public face is ``aethergraph.jobs.ProcessJobs``.
"""

from .protocol import TERMINAL, JobSpec, JobSpecError, JobState, JobStatus
from .store import JobStore, UnknownJob, new_job_id

__all__ = ["TERMINAL", "JobSpec", "JobSpecError", "JobState", "JobStatus", "JobStore", "UnknownJob",
           "new_job_id"]
