"""Reading the store for the app: the runs list a page at a time, a run's log, earlier pages.

One style for every read: a thread worker (the store is files and SQLite: blocking) that checks
``get_current_worker().is_cancelled`` as it goes and posts what it read as a message
(``IndexLoaded``, ``RunLogRead``, ``EarlierRead``); the handlers here fold it into the state on
the UI thread. An ``exclusive`` worker is cancelled when the next one of its group starts, so a
log nobody is looking at any more stops being read.

``StoreReads`` is mixed into the app (it uses the app's state, store and detail model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.worker import get_current_worker

from aethergraph.runtime import events as ev

from .messages import BackendProblem, EarlierRead, IndexLoaded, RunLogRead
from .state import RunModel, held

if TYPE_CHECKING:
    from .app import AetherGraphApp

# How many events a log reader reads between two looks at whether it is still wanted.
CHECK_EVERY = 2000


class StoreReads:
    """The app's store reads (mixed into ``AetherGraphApp``)."""

    # -- the runs list ----------------------------------------------------------------------------

    def load_index(self: "AetherGraphApp") -> None:
        self._index_loads += 1
        # The first read also catches the index up with the logs (a runtime that died left some
        # unindexed), but only after posting what the index already has: first paint is not
        # kept waiting. Live runtimes keep the index current; catching up again each minute
        # covers the rest.
        catch_up = self._index_loads == 1 or self._index_loads % 30 == 0
        self._read_index(catch_up)

    def reload_index(self: "AetherGraphApp") -> None:
        self._read_index(True)

    def load_more_runs(self: "AetherGraphApp", everything: bool = False) -> None:
        """The next page of older runs (``everything``: pages up to 10,000 runs, for a filter),
        from the oldest run loaded so far. One read at a time; the runs list asks again when
        the cursor nears its end."""
        st = self.state
        if st.loading_older or not st.index_has_more or st.oldest_key is None:
            return
        st.loading_older = True
        self._read_older(st.oldest_key, 10_000 if everything else st.PAGE)

    def _fetch_page(self: "AetherGraphApp") -> IndexLoaded:
        """The newest page of runs and the open asks, as a message (None rows: no store yet)."""
        store = self.store
        page = store.runs(self.state.PAGE) if store.exists() else None
        if page is None:
            return IndexLoaded(None, False, [])
        rows, more, total = page
        return IndexLoaded(rows, more, store.open_asks(), total)

    @work(thread=True, exclusive=True, group="index")
    def _read_index(self: "AetherGraphApp", catch_up: bool) -> None:
        worker = get_current_worker()
        try:
            loaded = self._fetch_page()
            if worker.is_cancelled:
                return
            self.post_message(loaded)
            if loaded.rows is None:
                return
            if catch_up and self.store.catch_up() and not worker.is_cancelled:
                self.post_message(self._fetch_page())
        except Exception as exc:
            self.post_message(IndexLoaded(None, False, None, error=f"reading the index: {type(exc).__name__}: {exc}"))

    @work(thread=True, exclusive=False, group="older")
    def _read_older(self: "AetherGraphApp", before: tuple[float, str], want: int) -> None:
        worker = get_current_worker()
        try:
            while want > 0 and not worker.is_cancelled:
                page = self.store.runs(min(want, 1000), before)
                if page is None:
                    self.post_message(IndexLoaded(None, False, None, older=True))
                    return
                rows, more, total = page
                want -= len(rows)
                final = not more or not rows or want <= 0
                self.post_message(IndexLoaded(rows, more, None, total, older=True, final=final))
                if final:
                    return
                before = (rows[-1].started, rows[-1].run_id)
            # (cancelled: the app is closing, nobody waits for the rest)
        except Exception as exc:
            self.post_message(IndexLoaded(None, False, None, older=True,
                                          error=f"reading older runs: {type(exc).__name__}: {exc}"))

    def on_index_loaded(self: "AetherGraphApp", msg: IndexLoaded) -> None:
        st = self.state
        if not msg.older:
            self.call_after_refresh(self._start_trio)  # (after the frame that shows this page)
        if msg.error:
            if msg.older:
                st.loading_older = False
            self.notify(msg.error, severity="error", timeout=8)
            return
        if msg.rows is None:
            st.loading_older = False
            if not st.store_missing:
                st.store_missing = True
                st.runs_version += 1
            return
        if st.store_missing:
            st.store_missing = False
        st.merge_index(msg.rows, msg.has_more, total=msg.total, older=msg.older)
        if msg.older and msg.final:
            st.loading_older = False
        if msg.offline_asks is not None:
            st.set_offline_asks(msg.offline_asks)
        self._counts()
        if not msg.older:
            # The newest page is what the first screen waits for: on screen now, not at the next
            # tick up to 0.1 s later (the tick then finds nothing changed). Older pages, which
            # can come many at a time, wait for the tick.
            self._tick()

    # -- one run's log ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="detail")
    def read_run_log(self: "AetherGraphApp", run_id: str) -> None:
        """Read the run's whole log into a fresh model (live events arriving meanwhile queue in
        the model being shown, and are applied on top when this one takes its place)."""
        worker = get_current_worker()
        model = RunModel(run_id, self.store.layout)
        error = ""
        try:
            for i, e in enumerate(self.store.read_run(run_id)):
                if i % CHECK_EVERY == 0 and worker.is_cancelled:
                    return  # another run was opened: this one is not shown any more
                model.apply(e)
        except Exception as exc:
            error = f"cannot read its log: {type(exc).__name__}: {exc}"
        if not error and model.summary.events == 0 and run_id not in self.state.live_runs:
            error = "no events in its log yet"
        if not worker.is_cancelled:
            self.post_message(RunLogRead(model, error))

    def on_run_log_read(self: "AetherGraphApp", msg: RunLogRead) -> None:
        model, cur = msg.model, self.detail
        if cur is None or cur.run_id != model.run_id:
            return  # the person moved on to another run
        for e in [*cur.timeline, *cur._pending]:  # live events the log did not have yet
            model.apply(e)
        model.load_error = msg.error if model.summary.events == 0 else ""
        model.loaded = True
        model.version += 1
        self.detail = model

    @work(thread=True, exclusive=True, group="earlier")
    def read_earlier(self: "AetherGraphApp", run_id: str, name: str, before_seq: int, page: int = 5000) -> None:
        """The ``page`` events (of the timeline, or log lines) just before ``before_seq``, read
        from the run's log again: a long run's whole history, a page at a time, as the person
        scrolls up, without holding it all in memory."""
        worker = get_current_worker()
        older: list[ev.Event] = []
        try:
            for i, e in enumerate(self.store.read_run(run_id)):
                if i % CHECK_EVERY == 0 and worker.is_cancelled:
                    return
                if e.seq and e.seq < before_seq and (name != "log" or type(e) is ev.Log):
                    older.append(e)
                    if len(older) > 2 * page:
                        del older[:-page]  # only the last page is wanted
        except Exception as exc:
            self.post_message(BackendProblem(f"reading the log of run {run_id}: {type(exc).__name__}: {exc}"))
            return
        if not worker.is_cancelled:
            self.post_message(EarlierRead(run_id, name, before_seq, older[-page:]))

    def on_earlier_read(self: "AetherGraphApp", msg: EarlierRead) -> None:
        d = self.detail
        if d is None or d.run_id != msg.run_id or not msg.chunk:
            return
        items, _ = held(d, msg.name)
        if not len(items) or items[0].seq != msg.before_seq:
            return  # the view moved on meanwhile
        d.earlier[msg.name] = msg.chunk + d.earlier[msg.name]
        d.version += 1
