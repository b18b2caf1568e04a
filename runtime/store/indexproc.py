"""The index in a process of its own, so that indexing does not share the run's GIL (B3/B5).

The log writer starts it once a runtime records fast (``LogWriter``: ``INDEX_PROCESS_AFTER``);
after each fsync it hands it "log X is durable up to byte N", one request line per batch, and
counts the batch indexed when the answer line comes back. The process is a reader of the logs
like ``Index.catch_up``: it never writes a log, reads complete lines only and never past the
durable byte it was given, and every ingest is one SQLite transaction that moves the index's
mark (a kill at any moment leaves the index as it was or as it will be, never half-written).

It lives as long as its stdin: when the runtime ends (or dies, kill -9 included) the pipe
closes and the process finishes the transaction it is in and exits. It ignores SIGINT: a
Ctrl-C goes to the runtime, which ends it by closing the pipe.

Protocol (JSON lines): the child says ``"ready"`` once its index is open; then each request is
``[[path relative to the store, durable end], ...]`` and each answer the number of events
indexed (``-1``: the ingest failed; the index is derived and the runtime's next open catches up).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

log = logging.getLogger("aethergraph.store")

READY = b'"ready"\n'


class IndexProcessGone(Exception):
    """The index process ended or stopped answering; the writer indexes in its own thread."""


class IndexProcess:
    """The runtime's handle on its index process (used from one worker thread at a time)."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(home)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._ready = False

    def ready(self) -> bool:
        """Has it opened the index (without waiting)? Until then the runtime indexes in its
        own thread: the child's start-up (~0.1-0.2 s) never holds the index back."""
        if not self._ready and select.select([self.proc.stdout], [], [], 0)[0]:
            if self.proc.stdout.readline() != READY:
                raise IndexProcessGone(f"the index process did not start (exit code {self.proc.poll()})")
            self._ready = True
        return self._ready

    def index(self, marks: Sequence[tuple[str, int]]) -> int:
        """Have ``marks`` indexed; return once the child's transaction is committed."""
        try:
            if not self._ready:
                if self.proc.stdout.readline() != READY:
                    raise IndexProcessGone("the index process did not start")
                self._ready = True
            self.proc.stdin.write(msgspec.json.encode(marks) + b"\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        except (OSError, ValueError) as exc:
            raise IndexProcessGone(str(exc)) from exc
        if not answer:
            raise IndexProcessGone(f"the index process ended (exit code {self.proc.poll()})")
        return int(answer)

    def stop(self, timeout: float = 30.0) -> None:
        """Close its pipe and wait for it to finish its transaction and exit (killed past
        ``timeout``: SQLite rolls an unfinished transaction back)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the index process did not end in %.0f s; killing it", timeout)
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def main(home: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .index import Index
    from .layout import StoreLayout

    index = Index(StoreLayout.at(home))
    out = sys.stdout.buffer
    out.write(READY)
    out.flush()
    try:
        for line in sys.stdin.buffer:
            try:
                n = index.catch_up_to([(str(rel), int(end)) for rel, end in msgspec.json.decode(line)])
            except Exception:
                log.exception("the index process failed to index a batch; the index catches up "
                              "from the logs on the next open")
                n = -1
            out.write(b"%d\n" % n)
            out.flush()
    finally:
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
