"""B11, ours only: ``ag tui`` first paint in a real terminal, locally and over SSH.

B7 times the dashboard headless; a person waits for more: the process start, the imports, the
terminal's own set-up and the first frame written to a real pseudo-terminal — and, over SSH,
the login. Here the terminal is tmux, driven the way tests/test_tui_tmux.py drives it (the
helpers of tests/agproc.py).

Setup (not timed): B7's store (N runs, 100 memory events each, written through the public API),
built once into ``bench/results/b11-store-N`` and kept for the later repetitions; a tmux server
of its own with a 100x30 window; for ``ssh``, an sshd on a free loopback port with a throwaway
host key and one authorised key. One untimed start first (imports, .pyc files, the index opened
once), as B7 does.

Timed: from asking tmux to start the command in the window until ``capture-pane`` shows rows
of the runs table (a run's state, SUCCEEDED), polled every 5 ms: what a person waits after
typing ``ag tui`` — for ``ssh``, ``ssh -tt 127.0.0.1 ag tui``, the key login included.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # bench/, for benchkit
sys.path.append(str(HERE))  # b7, whose store this is
sys.path.append(str(HERE.parents[1]))  # the repository, for tests.agproc

import shutil
import tempfile
import time

import trio

from b7 import build
from benchkit.measure import Region, args, emit
from tests.agproc import SSHD, TMUX, Sshd, Tmux, terminal, tui_command, wait_for_file

VARIANTS = ["local", "ssh"]
TARGET = "b11:tui"
ROW = "SUCCEEDED"  # a run's state in its row: the runs table is drawn


def store(n: int) -> Path:
    """B7's store of ``n`` runs, built on first use and reused by every later repetition."""
    home = HERE.parent / "results" / f"b11-store-{n}"
    done = home / ".built"
    if not done.exists():
        shutil.rmtree(home, ignore_errors=True)
        trio.run(build, str(home), n)
        done.touch()
    return home


def first_paint(tmux: Tmux, folder: Path, home: Path, sshd: Sshd | None) -> tuple[float, str]:
    """One ``ag tui`` started in the window: seconds until its runs rows are on screen, and that
    screen."""
    (folder / "tui.rc").unlink(missing_ok=True)
    t0 = time.perf_counter()
    tmux.run(TARGET, tui_command(folder, home, sshd))
    screen = tmux.wait_for(TARGET, ROW, timeout=120, every=0.005)
    return time.perf_counter() - t0, screen


def quit_tui(tmux: Tmux, folder: Path) -> None:
    """``q``, and the dashboard has exited (well) before the next start."""
    tmux("send-keys", "-t", TARGET, "q")
    rc = wait_for_file(folder / "tui.rc", timeout=60)
    if rc != "0":
        raise RuntimeError(f"ag tui exited {rc}; its last screen:\n{tmux.screen(TARGET)}")


def main(variant: str, n: int) -> None:
    if TMUX is None or (variant == "ssh" and SSHD is None):
        raise SystemExit("B11 needs tmux (and for ssh: ssh, sshd)")
    home = store(n)
    folder = Path(tempfile.mkdtemp())  # the harness's TMPDIR: this measurement's own
    with terminal(folder, ssh=variant == "ssh") as (tmux, sshd):
        tmux.window(TARGET)
        tmux("set-option", "-w", "-t", TARGET, "remain-on-exit", "on")  # started again after q
        first_paint(tmux, folder, home, sshd)  # the one warm-up
        quit_tui(tmux, folder)
        with Region() as region:
            wall, screen = first_paint(tmux, folder, home, sshd)
        quit_tui(tmux, folder)
    emit("B11", "ours", variant, n, region, first_paint_s=wall, rows_shown=screen.count(ROW),
         events=n * 100, terminal="tmux 100x30" + (", ssh -tt over loopback" if sshd else ""))


if __name__ == "__main__":
    a = args(VARIANTS, 10_000)
    main(a.variant, a.n)
