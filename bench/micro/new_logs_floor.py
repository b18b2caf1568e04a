"""The file system's own cost of B1 ``top+record``'s logs, without any of our Python.

    python bench/micro/new_logs_floor.py [threads] [--batches 10] [--files 200] [--sync fsync|syncfs]

Creates (``O_CREAT|O_EXCL``), writes 1,500 bytes to and makes durable ``batches`` x ``files``
new files in a fresh temporary folder, then prints wall and process CPU per file. What a
top-level run that makes its own durable log cannot go below on this disk. ``--sync fsync``:
each file fsync'd (``threads`` at a time, as the log writer's fsync pool does), then the folder;
``syncfs``: one ``syncfs(2)`` per batch for the whole file system (what the log writer does for a
batch of many logs, see ``runtime/store/writer.py``). Run both alternately: the box's load moves.
"""

import argparse
import ctypes
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("threads", type=int, nargs="?", default=32)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--sync", choices=["fsync", "syncfs"], default="fsync")
    a = p.parse_args()
    pool = ThreadPoolExecutor(a.threads)
    libc = ctypes.CDLL(None, use_errno=True)
    n = a.batches * a.files
    with tempfile.TemporaryDirectory(dir=os.environ.get("FLOOR_DIR")) as d:
        dfd = os.open(d, os.O_RDONLY)
        cpu, wall = time.process_time(), time.perf_counter()
        for b in range(a.batches):
            fds = []
            for i in range(a.files):
                fd = os.open(f"{d}/r{b}-{i:06d}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, b"x" * 1500)
                fds.append(fd)
            if a.sync == "syncfs":
                if libc.syncfs(dfd) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs")
            else:
                list(pool.map(os.fsync, fds))
                os.fsync(dfd)
            for fd in fds:
                os.close(fd)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        os.close(dfd)
    print(f"{a.sync} ({a.threads} threads): create + write + sync per file: wall {wall / n * 1e6:.0f} µs, "
          f"CPU {cpu / n * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
