"""Run benchmarks B1-B4 for ours and the peers; regenerate docs/benchmarks.md.

    python bench/run.py                      # everything (`just bench`); about an hour on 2 cores
    python bench/run.py --quick              # ours only, 3 repetitions (`just bench-quick`)
    python bench/run.py --only B1,B3 --frameworks ours --reps 1
    python bench/run.py --render-only        # rebuild docs/benchmarks.md from the JSON lines

Ours runs with this interpreter (the dev environment, editable install); the peers with
``bench/.peers-venv``, created on first use from ``bench/peers-requirements.txt``. A full run
writes ``docs/benchmarks.jsonl`` (raw measurements, one JSON object per line, the first line
describing the run) and ``docs/benchmarks.md``. Any partial run (``--quick``, ``--only``,
``--frameworks``, ``--reps``) writes ``bench/results/<quick|partial>.{jsonl,md}`` instead, so a
quick check never overwrites the published comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit

from benchkit import meta, plan, report, venvs  # noqa: E402
from benchkit.execute import run_workload  # noqa: E402

DOCS = venvs.REPO / "docs"
RESULTS = venvs.BENCH / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="ours only, 3 repetitions: a before/after check in under 3 minutes")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. B1,B3")
    p.add_argument("--frameworks", default="", help="comma-separated: ours,upstream,langgraph")
    p.add_argument("--reps", type=int, default=None, help="repetitions for every case")
    p.add_argument("--render-only", action="store_true",
                   help="re-render the Markdown from the JSON lines without measuring")
    p.add_argument("--out", default=None,
                   help="output path without extension (default: docs/benchmarks for a full run)")
    return p.parse_args(argv)


def _split(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()] or list(allowed)
    bad = [v for v in items if v not in allowed]
    if bad:
        sys.exit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def main(argv: list[str]) -> int:
    args = parse(argv)
    only = args.only.upper() or (",".join(plan.QUICK_WORKLOADS) if args.quick else "")
    workloads = _split(only, plan.WORKLOADS, "workload")
    frameworks = _split("ours" if args.quick else args.frameworks, plan.FRAMEWORKS, "framework")
    reps = 3 if args.quick and args.reps is None else args.reps
    full = not (args.quick or args.only or args.frameworks or args.reps)
    if args.out:
        out = Path(args.out)
    elif full or args.render_only:
        out = DOCS / "benchmarks"
    else:
        out = RESULTS / ("quick" if args.quick else "partial")
    jsonl, md = out.with_suffix(".jsonl"), out.with_suffix(".md")

    if args.render_only:
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        md.write_text(report.render(records[0] if records[0].get("type") == "meta" else {}, records))
        print(f"wrote {md}")
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ours = venvs.ours_python() if "ours" in frameworks else None
    peers = venvs.peers_python(log=log) if {"upstream", "langgraph"} & set(frameworks) else None
    cases = plan.build(ours, peers, workloads)
    for w in cases:
        cases[w] = [c for c in cases[w] if c.framework in frameworks]
        if reps is not None:
            for c in cases[w]:
                c.reps = reps

    info = meta.collect(ours, peers, argv)
    records: list[dict] = [info]
    # Measurements are appended as they come to a file only this harness touches (gitignored),
    # so an interrupted run keeps them; the published files are written once, at the end, from
    # memory: a checkout or stash that replaces docs/ during a long run cannot truncate them.
    RESULTS.mkdir(parents=True, exist_ok=True)
    progress = RESULTS / f"in-progress-{os.getpid()}.jsonl"
    with progress.open("w") as f:
        f.write(json.dumps(info) + "\n")

        def sink(result: dict) -> None:
            records.append(result)
            f.write(json.dumps(result) + "\n")
            f.flush()

        for w in workloads:
            if cases[w]:
                log(f"== {w}: {len(cases[w])} cases, {sum(c.reps for c in cases[w])} measurements")
                run_workload(cases[w], sink=sink, log=log, settle=not args.quick)

    # Other work on the machine during the run shows here (1-minute load average).
    info["load_after"] = round(os.getloadavg()[0], 2)
    # ...and so does a commit that landed meanwhile (each measurement imports the working tree).
    info.update(meta.code_state(after=True))
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    md.write_text(report.render(info, records))
    progress.unlink()
    log(f"wrote {jsonl} and {md}")
    failures = [r for r in records if "error" in r]
    if failures:
        log(f"{len(failures)} measurement(s) failed; see the tables and {jsonl}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
