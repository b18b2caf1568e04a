"""Who owns a run's log: an OS lock, not a guess from a pid.

The process that starts or resumes a run holds an exclusive POSIX record lock on one byte of
``<home>/runs/owners.lock``, at an offset derived from the run id, from before the run's first
event is written until its last one is durable. The kernel drops the lock when the process dies
(kill -9 included), so:

- "is anyone still writing this log?" is ``holder(...)``: a query (``F_GETLK``) that takes
  nothing, answered by the kernel with the pid of the holder;
- only the holder may repair a torn tail or append; readers never write a log;
- a second process resuming the same run fails to take the lock and refuses (``RunBusy``).

POSIX record locks belong to the process and are dropped when *any* descriptor of the file is
closed by it, so each process opens the lock file once per store and never closes it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
import threading
from pathlib import Path

from ..errors import RunBusy
from .layout import StoreLayout, private_dirs

LOCK_NAME = "owners.lock"

_mutex = threading.Lock()
_fds: dict[str, int] = {}  # lock file path -> descriptor opened read-write (never closed)
_read_fds: dict[str, int] = {}  # ... opened read-only, for a reader that may not create it
_held: set[tuple[str, str]] = set()  # (lock file path, run id) held by this process
# Per store and per run, what every start and end of a run would otherwise recompute: the lock
# file's path as a string (pathlib joins cost ~3 µs each, four per run) and the run's byte.
_keys: dict[StoreLayout, str] = {}
_offsets: dict[str, int] = {}  # run id -> its byte, while held (dropped on release)

# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid.
_FLOCK = "hhqqi"
_FLOCK_SIZE = struct.calcsize(_FLOCK) + 4  # trailing padding of the C struct on 64-bit Linux


def lock_path(layout: StoreLayout) -> Path:
    return layout.runs_dir / LOCK_NAME


def _key(layout: StoreLayout) -> str:
    key = _keys.get(layout)
    if key is None:
        key = _keys[layout] = str(lock_path(layout))
    return key


def _offset(run_id: str) -> int:
    """The byte a run's owner locks: 62 bits of a hash of the id (below off_t's maximum)."""
    digest = hashlib.blake2b(run_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 62) - 1)


def _fd(layout: StoreLayout) -> int:
    """The read-write descriptor of the store's lock file (created on first use)."""
    key = _key(layout)
    fd = _fds.get(key)
    if fd is None:
        private_dirs(layout.runs_dir)
        fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _fds[key] = fd
    return fd


def _query_fd(layout: StoreLayout) -> int | None:
    """A descriptor to ask the kernel about locks; a reader does not create the file."""
    key = _key(layout)
    fd = _fds.get(key)
    if fd is not None:
        return fd
    fd = _read_fds.get(key)
    if fd is None:
        try:
            fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # no process has ever owned a run of this store
        _read_fds[key] = fd
    return fd


def acquire(layout: StoreLayout, run_id: str) -> None:
    """Become the owner of ``run_id``'s log, or raise ``RunBusy`` if another owner is alive
    (in another process on this host, or already in this one)."""
    key = (_key(layout), run_id)
    with _mutex:
        if key in _held:
            raise RunBusy(run_id, os.getpid())
        fd = _fd(layout)
        offset = _offset(run_id)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise RunBusy(run_id, _holder_pid(fd, run_id)) from None
        _held.add(key)
        _offsets[run_id] = offset


def release(layout: StoreLayout, run_id: str) -> None:
    """Stop owning ``run_id``'s log (its last event is durable, or it was never written)."""
    key = (_key(layout), run_id)
    with _mutex:
        if key not in _held:
            return
        _held.discard(key)
        offset = _offsets.pop(run_id, None)  # a pure function of the id: recomputed if absent
        if offset is None:
            offset = _offset(run_id)
        fcntl.lockf(_fds[key[0]], fcntl.LOCK_UN, 1, offset, os.SEEK_SET)


def holds(layout: StoreLayout, run_id: str) -> bool:
    """Does this process own ``run_id``?"""
    return (_key(layout), run_id) in _held


def holder(layout: StoreLayout, run_id: str) -> int | None:
    """The pid of the process on this host that owns ``run_id``'s log, or None if nobody does.
    A query: it takes no lock."""
    if holds(layout, run_id):
        return os.getpid()  # the kernel never reports a process's own locks to itself
    fd = _query_fd(layout)
    if fd is None:
        return None
    return _holder_pid(fd, run_id)


def _holder_pid(fd: int, run_id: str) -> int | None:
    query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _offset(run_id), 1, 0)
    query += b"\0" * (_FLOCK_SIZE - len(query))
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    l_type, _, _, _, pid = struct.unpack_from(_FLOCK, answer)
    return None if l_type == fcntl.F_UNLCK else pid
