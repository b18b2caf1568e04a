"""The dashboard's trio side: attach to live runtimes, follow their events, send commands,
and (``ag tui --run``) host a runtime in-process.

It runs inside the app's trio guest run (see ``bridge``). It never touches a widget; it posts
messages (``aethergraph.tui.messages``) to the app. Live events are not posted one by one — at a thousand
events a second that would drown the UI — but gathered and posted as one batch every 100 ms.

Attaching: every second the store's ``runtimes/`` folder is read (``find_runtimes`` ignores the
adverts of dead processes); each new runtime gets a watcher task holding one sidecar connection
with one subscription to all its runs. A runtime that exits closes the connection, which ends
the watcher; a restarted runtime advertises anew and is picked up by the next poll. Closing the
dashboard only closes these connections: runs in other processes never notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.sidecar.client import NoRuntime, SidecarClient, SidecarError, find_runtimes

from .messages import (
    BackendProblem,
    HostedRunEnded,
    HostedRunStarted,
    LiveEvents,
    RuntimeAttached,
    RuntimeDetached,
)

log = logging.getLogger("aethergraph.tui")

CLIENT_NAME = "ag tui"


@attrs.define
class HostedRun:
    """A graph this dashboard runs itself (``ag tui --run TARGET --input JSON``)."""

    fn: Any
    inputs: dict[str, Any]
    entrypoint: str = ""


@attrs.define(eq=False)
class Watcher:
    advert: Any
    client: SidecarClient | None = None
    attached: bool = False


class Backend:
    def __init__(
        self,
        post: Callable[[Any], bool],
        home: Path,
        *,
        hosted: HostedRun | None = None,
        poll_s: float = 1.0,
        flush_s: float = 0.1,
    ) -> None:
        self.post = post
        self.home = home
        self.hosted = hosted
        self.poll_s = poll_s
        self.flush_s = flush_s
        self.watchers: dict[str, Watcher] = {}
        self.owner: dict[str, str] = {}  # run_id -> runtime_id executing it
        self.hosted_rt: Any = None
        self.hosted_runtime_id = ""
        self.hosted_outcome: Any = None
        self._buffer: list[tuple[str, ev.Event]] = []
        self._warned: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._closing: trio.Event | None = None
        self._host_done: trio.Event | None = None

    # -- the long-lived tasks -----------------------------------------------------------------

    async def main(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._closing = trio.Event()
        self._host_done = trio.Event()
        if self.hosted is not None:
            nursery.start_soon(self._host)
        else:
            self._host_done.set()
        nursery.start_soon(self._discover)
        nursery.start_soon(self._flusher)

    async def _discover(self) -> None:
        home = str(self.home)
        while True:
            try:
                adverts = await trio.to_thread.run_sync(find_runtimes, home)
            except OSError as exc:
                adverts = []
                self._warn_once("discover", f"cannot read the store's runtimes folder: {exc}")
            for advert in adverts:
                if advert.runtime_id not in self.watchers:
                    w = Watcher(advert)
                    self.watchers[advert.runtime_id] = w
                    self._nursery.start_soon(self._watch, w)
            await trio.sleep(self.poll_s)

    async def _watch(self, w: Watcher) -> None:
        rid = w.advert.runtime_id
        reason = "the runtime closed the connection"
        try:
            async with SidecarClient.connect(w.advert, client=CLIENT_NAME) as client:
                w.client = client
                # Subscribe first, then list: nothing can fall between the two (duplicates can,
                # and applying them twice is harmless).
                async with client.subscribe("", snapshot=False) as events:
                    runs = await client.list_runs()
                    asks = await client.list_asks()
                    for r in runs:
                        self.owner[r.run_id] = rid
                    w.attached = True
                    self._warned.discard(rid)
                    self.post(RuntimeAttached(rid, w.advert, runs, asks))
                    async for e in events:
                        t = type(e)
                        if t is ev.RunStarted or t is ev.RunResumed:
                            self.owner[e.run_id] = rid
                        elif t is ev.RunFinished and self.owner.get(e.run_id) == rid:
                            del self.owner[e.run_id]
                        self._buffer.append((rid, e))
                        if len(self._buffer) >= 20_000:  # a burst: do not wait for the tick
                            self._flush()
        except SidecarError as exc:
            reason = str(exc)
        except Exception as exc:  # OSError, a refused handshake, a timeout: all say "not reachable"
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            w.client = None
            self._flush()
            if self.watchers.get(rid) is w:
                del self.watchers[rid]
            for run_id, owner in list(self.owner.items()):
                if owner == rid:
                    del self.owner[run_id]
            if w.attached:
                self.post(RuntimeDetached(rid, reason))
        if not w.attached:
            await self._attach_failed(w.advert, reason)

    async def _attach_failed(self, advert: Any, reason: str) -> None:
        """A runtime we found but could not connect to. Usually it was just closing: a process
        whose run ended removes its advert last, after its socket is gone, so a poll can catch
        it in between. That is no news. A runtime whose process died (its advert left behind)
        or that is alive and still refuses us is."""
        from aethergraph.runtime.sidecar.registry import advert_path, is_stale
        from aethergraph.runtime.store.layout import StoreLayout

        rid = advert.runtime_id
        path = advert_path(StoreLayout.at(self.home), rid)
        await trio.sleep(min(0.5, self.poll_s))  # let a closing runtime finish removing its advert
        if not path.exists():
            return  # it exited normally
        if is_stale(advert, StoreLayout.at(self.home)):
            self._warn_once(rid, f"runtime {rid} (pid {advert.pid}) died before the dashboard attached")
        else:
            self._warn_once(rid, f"cannot attach to runtime {rid}: {reason}")

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.post(BackendProblem(text, "warning"))

    async def _flusher(self) -> None:
        while True:
            await trio.sleep(self.flush_s)
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self.post(LiveEvents(batch))

    # -- hosting a run (ag tui --run) ---------------------------------------------------------

    async def _host(self) -> None:
        from aethergraph.api import open_runtime

        h = self.hosted
        try:
            async with open_runtime(home=str(self.home), console=False, sidecar=True, handle_sigint=False) as rt:
                self.hosted_rt = rt
                self.hosted_runtime_id = rt.sidecar.runtime_id if rt.sidecar is not None else ""
                self.post(HostedRunStarted(self.hosted_runtime_id))
                outcome = await h.fn.start_run(rt, h.inputs, entrypoint=h.entrypoint or None)
                self.hosted_outcome = outcome
                err = outcome.error
                self.post(HostedRunEnded(outcome.run_id, outcome.status,
                                         "" if err is None else f"{type(err).__name__}: {err}"))
                # The runtime stays open (it can serve resumes) until the dashboard closes.
                await self._closing.wait()
        except Exception as exc:
            log.exception("the hosted runtime failed")
            self.post(BackendProblem(f"the run hosted by this dashboard stopped: {type(exc).__name__}: {exc}"))
        finally:
            self.hosted_rt = None
            self._host_done.set()

    def hosted_running(self) -> bool:
        rt = self.hosted_rt
        return rt is not None and bool(rt.runs)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Before trio is cancelled: end the hosted run cleanly, so its log says CANCELLED
        (cancelling the runtime from outside would leave it looking interrupted)."""
        rt = self.hosted_rt
        if rt is not None:
            rt.cancel_all("the dashboard was closed", by=CLIENT_NAME)
            # Let each run record its own end before the runtime itself closes.
            with trio.move_on_after(timeout):
                while rt.runs:
                    await trio.sleep(0.02)
        if self._closing is not None:
            self._closing.set()
        if self._host_done is not None:
            with trio.move_on_after(timeout):
                await self._host_done.wait()

    # -- commands (called from the UI through the bridge) -------------------------------------

    def _client(self, runtime_id: str) -> SidecarClient:
        w = self.watchers.get(runtime_id)
        if w is None or w.client is None:
            raise NoRuntime(f"runtime {runtime_id} is no longer reachable")
        return w.client

    async def _client_for_run(self, run_id: str) -> SidecarClient:
        rid = self.owner.get(run_id)
        if rid is not None and rid in self.watchers and self.watchers[rid].client is not None:
            return self.watchers[rid].client
        for rid, w in list(self.watchers.items()):
            if w.client is None:
                continue
            try:
                runs = await w.client.list_runs()
            except SidecarError:
                continue
            if any(r.run_id == run_id for r in runs):
                self.owner[run_id] = rid
                return w.client
        raise NoRuntime(f"run {run_id} is not running in any live runtime")

    async def answer(self, runtime_id: str, ask_id: str, value: str) -> str:
        return await self._client(runtime_id).answer(ask_id, value)

    async def cancel(self, run_id: str, node: str = "", reason: str = "") -> None:
        client = await self._client_for_run(run_id)
        await client.cancel(run_id, node, reason or f"cancelled from {CLIENT_NAME}")

    async def retry(self, run_id: str, node: str) -> None:
        client = await self._client_for_run(run_id)
        await client.retry(run_id, node)

    async def resume(self, run_id: str) -> str:
        """Ask a live runtime (this dashboard's own first) to resume ``run_id``; returns the
        runtime's id. With none live, says so: there is nothing to run the code in."""
        order = sorted(self.watchers.items(), key=lambda kv: kv[0] != self.hosted_runtime_id)
        for rid, w in order:
            if w.client is not None:
                await w.client.resume(run_id)
                return rid
        raise NoRuntime(
            "no live runtime in this store can resume it; run `ag resume "
            f"{run_id}` in a terminal, or start one (`ag tui --run …`)"
        )
