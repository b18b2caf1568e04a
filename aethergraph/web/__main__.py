"""One browser tab's dashboard: ``python -m aethergraph.web --parent PID --home HOME``.

``ag tui`` with Textual's web driver (chosen by ``TEXTUAL_DRIVER`` in the environment the server
gives it), plus a watch on the server: a server that dies without ending its sessions (SIGKILL,
a crash) must not leave dashboards behind. When the server is gone the dashboard is asked to
quit (SIGTERM, which the web driver turns into a clean exit) and, since an app whose screen
pipe broke mid-frame may never finish quitting, ended outright a few seconds later.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
import time

GRACE_S = 3.0


def _wait_for_exit(pid: int) -> None:
    """Return when process ``pid`` has exited (at once if it already has)."""
    try:
        fd = os.pidfd_open(pid)  # Linux: readable when the process exits, no polling
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _watch(parent: int) -> None:
    _wait_for_exit(parent)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m aethergraph.web")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    if os.getppid() != args.parent:
        return 0  # the server is already gone: nobody to show a dashboard to
    threading.Thread(target=_watch, args=(args.parent,), daemon=True, name="ag-web-parent").start()
    # The dashboard is a floor above: this program exists to host it, so it imports it here.
    from aethergraph.tui.app import main as tui_main

    return tui_main(["--home", args.home])


if __name__ == "__main__":
    sys.exit(main())
