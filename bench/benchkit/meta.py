"""Where and how a run happened: machine, interpreters, package versions, commit, command."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

from .venvs import REPO, versions

OURS_PACKAGES = ["aethergraph", "trio", "msgspec", "attrs"]
PEER_PACKAGES = ["aethergraph", "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite",
                 "langchain-core", "aiosqlite", "pydantic"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.rstrip("\n")
    except (OSError, subprocess.CalledProcessError):
        return ""


def code_state(*, after: bool = False) -> dict:
    """The commit, and which files of the measured code (not bench/ or docs/) differ from it."""
    suffix = "_after" if after else ""
    return {
        "commit" + suffix: _git("rev-parse", "--short=12", "HEAD"),
        "uncommitted" + suffix: [line[3:] for line in _git(
            "status", "--porcelain", "--", "runtime", "aethergraph", "pyproject.toml").splitlines()],
    }


def collect(ours: Path | None, peers: Path | None, argv: list[str]) -> dict:
    meta = {
        "type": "meta",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/run.py" + "".join(f" {a}" for a in argv),
        "cores": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        **code_state(),
    }
    if ours:
        meta["ours_python"] = str(ours)
        meta["ours_versions"] = versions(ours, OURS_PACKAGES)
    if peers:
        meta["peers_python"] = str(peers)
        meta["peers_versions"] = versions(peers, PEER_PACKAGES)
        meta["peers_python_version"] = subprocess.run(
            [str(peers), "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True, text=True, check=True).stdout.strip()
    return meta
