"""Profile the timed region of one benchmark script: where does our time go?

    python bench/profile.py ours/b1.py --variant top [--n 2000] [--sort tottime] [--limit 30]

Runs the script once in a fresh process with ``BENCH_PROFILE`` set, so ``benchkit.measure.Region``
wraps exactly the measured region in cProfile (the main thread only: work the runtime hands to
worker threads, like the log writer's fsync and index ingest, shows up as waiting), then prints
the top functions. Profiling slows Python code several-fold: read the shares, not the times.
"""

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("script", help="relative to bench/, e.g. ours/b1.py")
    p.add_argument("--variant", required=True)
    p.add_argument("--n", type=int)
    p.add_argument("--sort", default="tottime", choices=["tottime", "cumulative", "ncalls"])
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--python", default=sys.executable, help="interpreter (peers: bench/.peers-venv/bin/python)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "region.prof")
        argv = [a.python, str(BENCH / a.script), "--variant", a.variant]
        if a.n:
            argv += ["--n", str(a.n)]
        proc = subprocess.run(argv, cwd=tmp, env={**os.environ, "BENCH_PROFILE": out, "TMPDIR": tmp})
        if proc.returncode != 0:
            return proc.returncode
        stats = pstats.Stats(out)
        stats.strip_dirs().sort_stats(a.sort).print_stats(a.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
