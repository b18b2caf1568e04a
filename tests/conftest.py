from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from aethergraph import services as _services
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events

from .agproc import ag_cmd, start_ag

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


@attrs.define
class Background:
    """What ``in_background`` started: its outcome once the block has ended."""

    outcome: Any = None


@asynccontextmanager
async def in_background(fn: Callable[..., Awaitable[Any]], *args: Any) -> AsyncIterator[Background]:
    """``fn(*args)`` (a run: ``graph.start_run, rt, inputs``; or a graph called in the runtime)
    goes on while the block does something to it (cancel, retry, answer, kill a worker);
    leaving the block waits for its end, whose return value is then ``.outcome``."""
    started = Background()

    async def run() -> None:
        started.outcome = await fn(*args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield started


def run_events(layout: StoreLayout, run_id: str):
    return read_events(layout.run_log(run_id))


def event_types(events) -> list[str]:
    return [type(e).__struct_config__.tag for e in events]


def ag(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60,
       stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run the real `ag` console script in a child process."""
    return subprocess.run(
        [*ag_cmd(), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd,
        timeout=timeout, stdin=stdin,
    )


def crash_run(folder: Path, name: str, body: str, fn: str, fault: str, env: dict | None = None) -> str:
    """``body`` written to ``folder/name``, then ``ag run`` of its ``fn`` killed by the fault
    injector at ``fault`` (with strict durability: what happened before is on disk). The target."""
    script = folder / name
    script.write_text(body)
    target = f"{script}:{fn}"
    out = ag("run", target, "--durability", "strict", env={**(env or {}), "AETHERGRAPH_FAULT": fault}, cwd=folder)
    assert out.returncode == -signal.SIGKILL, out.stderr
    return target


@pytest.fixture
def spawn_ag(tmp_path):
    """Start ``ag *args`` in the background (``agproc.start_ag``: in ``tmp_path`` unless told,
    stdin closed, output piped as text); whatever still runs when the test ends is killed, so
    a failing test leaves no process behind."""
    procs: list[subprocess.Popen] = []

    def spawn(*args: str, cwd: Path | None = None, **kw) -> subprocess.Popen:
        procs.append(start_ag(*args, cwd=tmp_path if cwd is None else cwd, **kw))
        return procs[-1]

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
