"""The two interpreters a benchmark run uses, and the peers' virtualenv.

Ours runs with the interpreter that runs ``bench/run.py`` (``sys.executable``: the dev venv with
the editable install, so the current code is measured). The peers - upstream aethergraph
0.1.0a15 and LangGraph - live in ``bench/.peers-venv``, created here from the pinned
``bench/peers-requirements.txt``. Upstream is also named ``aethergraph``, so the two must never
share an environment; both sides are checked before anything is measured.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
PEERS_VENV = BENCH / ".peers-venv"
REQUIREMENTS = BENCH / "peers-requirements.txt"
UPSTREAM_VERSION = "0.1.0a15"

_STAMP = ".requirements.sha256"


def ours_python() -> Path:
    """Our interpreter, after checking that its ``aethergraph`` is this checkout's."""
    out = _run_py(Path(sys.executable), "import aethergraph; print(aethergraph.__file__)")
    where = Path(out.strip()).resolve()
    if REPO not in where.parents:
        sys.exit(f"{sys.executable} imports aethergraph from {where}, not from {REPO}; run "
                 f"bench/run.py with the dev environment (pip install -e '.[dev]').")
    return Path(sys.executable)


def peers_python(*, log=print) -> Path:
    """The peers' interpreter; (re)creates the venv when the requirements changed."""
    py = PEERS_VENV / "bin" / "python"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEERS_VENV / _STAMP
    if not (py.exists() and stamp.exists() and stamp.read_text().strip() == digest):
        if not py.exists():
            log(f"creating the peers' virtualenv {PEERS_VENV}")
            subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        log(f"installing {REQUIREMENTS.name} into it (a few minutes the first time)")
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(digest + "\n")
    version = _run_py(py, "import importlib.metadata as m; print(m.version('aethergraph'))")
    if version.strip() != UPSTREAM_VERSION:
        sys.exit(f"{PEERS_VENV} holds aethergraph {version.strip()}, expected upstream "
                 f"{UPSTREAM_VERSION}; delete the directory and run again.")
    return py


def versions(py: Path, packages: list[str]) -> dict[str, str]:
    """Installed versions of ``packages`` in the environment of ``py``."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        f"for p in {packages!r}:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: out[p] = 'missing'\n"
        "print(json.dumps(out))\n"
    )
    import json

    return json.loads(_run_py(py, code))


def _run_py(py: Path, code: str) -> str:
    # From a neutral directory, so the repository root never shadows an installed package.
    return subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True,
                          cwd="/").stdout
