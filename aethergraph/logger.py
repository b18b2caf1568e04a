"""logger(): a standard logger that also records ``log`` events in the run.

Each call both goes to Python's ``logging`` (logger ``aethergraph.node``, with ``run_id`` and
``node_id`` in the record) and is appended to the run's log, where ``ag show`` and the dashboard
read it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aethergraph.runtime import events as ev

if TYPE_CHECKING:
    from aethergraph.runtime.engine import NodeHandle

_log = logging.getLogger("aethergraph.node")


class NodeLogger:
    def __init__(self, node: NodeHandle) -> None:
        self._node = node
        self.logger = _log

    def log(self, level: int, msg: str, *args: Any, exc_info: Any = None) -> None:
        text = msg % args if args else str(msg)
        node = self._node
        node.emit(ev.Log, level=logging.getLevelName(level), message=text, logger=self.logger.name)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "[%s %s] %s", node.run.run_id, node.path, text,
                            exc_info=exc_info, extra={"run_id": node.run.run_id, "node_id": node.path})

    def debug(self, msg: str, *args: Any) -> None:
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, msg, *args)

    warn = warning

    def error(self, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True)

    def critical(self, msg: str, *args: Any) -> None:
        self.log(logging.CRITICAL, msg, *args)
