"""Keep exceptions from the user's code unwrapped when they pass through the engine's nurseries.

trio wraps whatever leaves a nursery in an ``ExceptionGroup``. The runtime's nurseries are an
implementation detail: a node's ``ValueError`` must reach the caller as a ``ValueError`` so that
``except ValueError`` works. Groups that really hold several errors stay groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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
