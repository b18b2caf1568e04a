"""``ag check``: compare the logs (the truth) with everything derived from them.

It reports and never repairs: a person decides whether to ``ag index rebuild``. What it looks at:
unreadable lines and torn tails in logs; runs whose index entry disagrees with their log (state,
memory events, artifacts); index entries without a log; artifacts whose blob is missing or (with
``verify_blobs``) whose bytes no longer hash to their name.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import attrs

from .. import events as ev
from ..history import effective_status
from ..errors import StoreError
from .artifacts import BlobStore
from .index import Index
from .layout import StoreLayout
from .logfile import BadLine, complete_size, read_log


@attrs.frozen
class Problem:
    """One thing found wrong, and where: a log (and its line), the index, a blob. Printed as
    ``where: what``, one line each, so a script can grep ``ag check``'s report."""

    where: str
    what: str

    def __str__(self) -> str:
        return ": ".join((self.where, self.what))


@attrs.define
class CheckReport:
    logs: int = 0
    events: int = 0
    problems: list[Problem] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(layout: StoreLayout, *, verify_blobs: bool = False) -> CheckReport:
    report = CheckReport()
    index = Index(layout)
    blobs = BlobStore(layout)
    try:
        marks = index.indexed_marks()
        indexed_runs = {r.run_id: r for r in index.runs()}
        mem_counts = {}
        art_counts = {}
        for run_id, m, a in index.iter_counts():
            mem_counts[run_id], art_counts[run_id] = m, a
        seen_runs: set[str] = set()
        seen_blobs: set[str] = set()
        for path in layout.iter_logs():
            report.logs += 1
            run_id = path.stem
            seen_runs.add(run_id)
            bad: list[BadLine] = []
            counts: Counter[str] = Counter()
            status = None
            host = None
            for rec in read_log(path, bad_lines=bad, warn=False):
                report.events += 1
                e = rec.event
                t = type(e)
                if t is ev.MemoryRecorded:
                    counts["memory"] += 1
                elif t is ev.ArtifactWritten:
                    counts["artifacts"] += 1
                    if e.sha256 not in seen_blobs:
                        seen_blobs.add(e.sha256)
                        _check_blob(report, blobs, e, verify_blobs)
                elif t is ev.RunStarted:
                    status, host = ev.RUNNING, e.host
                elif t is ev.RunFinished:
                    status = e.status
            where = str(path.relative_to(layout.home))
            for b in bad:
                report.problems.append(Problem(
                    f"{where}:{'line ' + str(b.line_no) if b.line_no else 'byte ' + str(b.offset)}",
                    f"unreadable line skipped ({b.reason})",
                ))
            size = os.path.getsize(path)
            complete = complete_size(path)
            if complete < size:
                report.problems.append(Problem(where, f"torn last line ({size - complete} bytes) from a crash; "
                                               "readers skip it; `ag resume` (the run's next owner) cuts it off"))
            mark = marks.get(where, 0)
            if mark < complete:
                report.problems.append(Problem(where, f"index is behind the log by {complete - mark} bytes; "
                                               "it catches up when a runtime opens (or `ag index rebuild`)"))
                continue
            row = indexed_runs.get(run_id)
            if status is not None and row is None:
                report.problems.append(Problem(where, "run is missing from the index"))
                continue
            if row is not None and status is not None and row.status != status:
                report.problems.append(Problem(
                    where, f"index says {row.status}, log says {effective_status(status, host, run_id, layout)}"))
            if mem_counts.get(run_id, 0) != counts["memory"]:
                report.problems.append(Problem(
                    where, f"log has {counts['memory']} memory events, index has {mem_counts.get(run_id, 0)}"))
            if art_counts.get(run_id, 0) != counts["artifacts"]:
                report.problems.append(Problem(
                    where, f"log has {counts['artifacts']} artifacts, index has {art_counts.get(run_id, 0)}"))
        for run_id in sorted(set(indexed_runs) - seen_runs):
            report.problems.append(Problem(f"run {run_id}", "in the index but its log is gone"))
    finally:
        index.close()
    return report


def _check_blob(report: CheckReport, blobs: BlobStore, e: ev.ArtifactWritten, verify: bool) -> None:
    if not os.path.lexists(blobs.path_for(e.sha256)):
        report.problems.append(Problem(f"artifact {e.ref}", f"blob for {e.name!r} is missing"))
        return
    try:
        fd = blobs.open_blob(e.sha256)  # a regular file in the store, no symlink followed
    except StoreError as exc:
        report.problems.append(Problem(f"artifact {e.ref}", f"blob for {e.name!r}: {exc}"))
        return
    with open(fd, "rb") as f:
        if not verify:
            return
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != e.sha256:
        report.problems.append(Problem(f"artifact {e.ref}", f"blob for {e.name!r} does not match its hash"))
