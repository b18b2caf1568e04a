"""Checkpointers and stores for the LangGraph scripts, and the environment they run in.

Like with like: ``none`` keeps nothing; ``memory`` is ``InMemorySaver`` (+ ``InMemoryStore``),
in-process only; ``sqlite`` is ``AsyncSqliteSaver`` (+ ``AsyncSqliteStore``) on a file in a fresh
temporary directory, the durable configuration. LangSmith tracing is forced off so nothing
touches the network.
"""

import os
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from benchkit.peer_env import OFFLINE_ENV

os.environ.update({k: v for k, v in OFFLINE_ENV.items() if k.startswith("LANG")})

CHECKPOINTERS = ("none", "memory", "sqlite")


async def open_persistence(stack: AsyncExitStack, kind: str, *, with_store: bool):
    """Return ``(checkpointer, store)`` for ``kind``; both closed by ``stack``."""
    if kind == "none":
        from langgraph.store.memory import InMemoryStore

        return None, (InMemoryStore() if with_store else None)
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.store.memory import InMemoryStore

        return InMemorySaver(), (InMemoryStore() if with_store else None)
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lg-bench-")))
        saver = await stack.enter_async_context(
            AsyncSqliteSaver.from_conn_string(str(tmp / "checkpoints.sqlite"))
        )
        await saver.setup()
        store = None
        if with_store:
            store = await stack.enter_async_context(
                AsyncSqliteStore.from_conn_string(str(tmp / "store.sqlite"))
            )
            await store.setup()
        return saver, store
    raise ValueError(kind)
