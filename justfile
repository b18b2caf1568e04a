# AetherGraph recipes. `just` comes from the rust-just package in the dev extras.
set shell := ["bash", "-euo", "pipefail", "-c"]

# list recipes
default:
    @just --list

# install the package with its dev extras into the active environment
setup:
    python -m pip install -e '.[dev]'

# the test suite (extra arguments go to pytest)
test *args:
    python -m pytest -q {{args}}

# the seed tutorial: submit → poll → notify
demo:
    python examples/tutorial_submit_poll_notify.py

# benchmarks: ours and the peers', regenerates docs/benchmarks.md
bench *args:
    python bench/run.py {{args}}

# ours only, a few minutes, for before/after checks on a hot path
bench-quick *args:
    python bench/run.py --quick {{args}}

# the crash matrix of tests/test_step_identity.py with 30 trials per case (the suite runs 8)
crash-matrix *args:
    AG_CRASH_TRIALS=30 python -m pytest -q tests/test_step_identity.py -k crash_matrix {{args}}

# the crash matrix: kill -9 a recording process at random points, resume, check (strict, batch)
fault *args:
    python bench/fault_matrix.py {{args}}
