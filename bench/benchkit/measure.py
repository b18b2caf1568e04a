"""The timed region of one measurement, and how a measurement script reports it.

Every benchmark script, ours or a peer's, runs in a fresh process, does its imports, setup and
exactly one warm-up first, then wraps the measured work in ``Region``. This module is imported
from two virtualenvs that share nothing else, so it uses the standard library only.

Rules (docs/benchmarks.md and ../shared/bench/PEER_WORKLOADS.md): wall is a
``time.perf_counter()`` delta; CPU is the delta of ``getrusage(RUSAGE_SELF)`` user + system time,
which counts every thread of the process (SQLite and fsync work done in worker threads is
included); peak RSS is ``ru_maxrss`` (KiB on Linux, a process-lifetime peak) read after the
region, and ``ru_maxrss`` read just before it says how much of that peak predates the region.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any


def _usage() -> tuple[float, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss


class Region:
    """``with Region() as r: ...`` then ``r.fields()``: wall, CPU and RSS of the block."""

    wall_s: float
    cpu_s: float
    rss_before_kib: int
    rss_peak_kib: int

    def __enter__(self) -> Region:
        self._profiler = _profiler()
        self._cpu0, self.rss_before_kib = _usage()
        self._t0 = time.perf_counter()
        if self._profiler is not None:
            self._profiler.enable()
        return self

    def __exit__(self, *exc: object) -> bool:
        self.wall_s = time.perf_counter() - self._t0
        cpu1, self.rss_peak_kib = _usage()
        self.cpu_s = cpu1 - self._cpu0
        if self._profiler is not None:
            self._profiler.disable()
            self._profiler.dump_stats(os.environ["BENCH_PROFILE"])
        return False

    FIELDS = ("wall_s", "cpu_s", "rss_before_kib", "rss_peak_kib")

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}


def _profiler():
    """``BENCH_PROFILE=out.prof`` (set by bench/profile.py): cProfile exactly the timed region
    (main thread only). Never set during a measurement run."""
    if not os.environ.get("BENCH_PROFILE"):
        return None
    import cProfile

    return cProfile.Profile()


def args(variants: list[str], default_n: int) -> argparse.Namespace:
    """The command line every measurement script takes: ``--variant V --n N``."""
    p = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    p.add_argument("--variant", choices=variants, required=True)
    p.add_argument("--n", type=int, default=default_n)
    return p.parse_args()


def emit(workload: str, framework: str, variant: str, n: int, region: Region, **extra: Any) -> None:
    """Print the measurement as ONE JSON line, last on stdout (run.py reads the last line that
    parses; frameworks are free to print their own chatter before it)."""
    result = {"workload": workload, "framework": framework, "variant": variant, "n": n}
    result.update(region.fields())
    result.update(extra)
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
