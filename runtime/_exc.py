"""Keep exceptions from the user's code unwrapped when they pass through the engine's nurseries.

trio wraps whatever leaves a nursery in an ``ExceptionGroup``. The runtime's nurseries are an
implementation detail: a node's ``ValueError`` must reach the caller as a ``ValueError`` so that
``except ValueError`` works. Groups that really hold several errors stay groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


def _sole(exc: BaseException) -> BaseException | None:
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@contextmanager
def unwrap_single() -> Iterator[None]:
    try:
        yield
    except BaseExceptionGroup as group:
        exc = _sole(group)
        if exc is None:
            raise
        context, cause, suppress = exc.__context__, exc.__cause__, exc.__suppress_context__
        try:
            raise exc
        finally:
            exc.__context__, exc.__cause__, exc.__suppress_context__ = context, cause, suppress
            del exc, group


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions at the bottom of ``exc``'s groups, depth first."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def real_leaves(exc: BaseException) -> list[BaseException]:
    """The leaves that say what went wrong: not the ``Cancelled`` of siblings a failure took
    down with it (all of them when there is nothing else)."""
    found = leaves(exc)
    real = [e for e in found if not isinstance(e, trio.Cancelled)]
    return real or found


NODE_ATTR = "_aethergraph_node"


def tag_node(exc: BaseException, path: str) -> None:
    """Remember on each leaf of ``exc`` the innermost node it failed (the first to tag it)."""
    for leaf in leaves(exc):
        if getattr(leaf, NODE_ATTR, None) is None:
            try:
                setattr(leaf, NODE_ATTR, path)
            except (AttributeError, TypeError):
                pass


def describe(exc: BaseException) -> tuple[str, str]:
    """(type, message) naming the leaf exception and the node it failed, even through
    nursery exception groups: ``("RuntimeError", "disk full (in node main/work#3)")``."""
    real = real_leaves(exc)
    leaf = real[0]
    message = str(leaf)
    node = getattr(leaf, NODE_ATTR, None)
    if node:
        message += f" (in node {node})"
    if len(real) > 1:
        message += f" (and {len(real) - 1} more)"
    return type(leaf).__qualname__, message
