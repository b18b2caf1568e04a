from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aethergraph import services as _services
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial_submit_poll_notify.py"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own store and starts with no registered services."""
    home = tmp_path / "store"
    monkeypatch.setenv("AETHERGRAPH_HOME", str(home))
    monkeypatch.delenv("AETHERGRAPH_DURABILITY", raising=False)
    saved = dict(_services._REGISTRY)
    _services._REGISTRY.clear()
    yield
    _services._REGISTRY.clear()
    _services._REGISTRY.update(saved)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def layout(home) -> StoreLayout:
    return StoreLayout.at(home)


def rt_open(home, **kw):
    """A runtime for in-process tests: quiet, no signal handler, and no sidecar unless asked
    (with a sidecar attached an ask waits for remote answers instead of failing fast)."""
    from aethergraph import open_runtime

    kw.setdefault("console", False)
    kw.setdefault("handle_sigint", False)
    kw.setdefault("sidecar", False)
    return open_runtime(home=str(home), **kw)


def run_events(layout: StoreLayout, run_id: str):
    return read_events(layout.run_log(run_id))


def event_types(events) -> list[str]:
    return [type(e).__struct_config__.tag for e in events]


def ag(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60,
       stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run the real `ag` console script in a child process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    exe = Path(sys.executable).parent / "ag"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "aethergraph.cli.main"]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
        stdin=stdin,
    )
