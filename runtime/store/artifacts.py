"""Content-addressed blobs.

A blob lives at ``artifacts/ab/cd/<sha256>``: written to a temporary file, fsync'd, renamed into
place, and its folder fsync'd, so a reader never sees half a blob and a crash never leaves one
under its final name. A temporary file is flock'd while it is written; one a crash left behind
is removed when a runtime next opens the store (``sweep_orphan_parts``).

A blob is read only as a regular file inside the store: no symlink is followed below
``artifacts/`` (one planted there would otherwise print any file the reader can read). The same bytes written twice are stored once. What a blob *is* (its name,
who wrote it, when) is not here: it is an ``artifact_written`` event in the run's log.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import time
from pathlib import Path, PurePosixPath

from ..errors import StoreError
from .layout import StoreLayout, open_private, private_dirs

REF_PREFIX = "ag://artifact/"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME = 255
ORPHAN_PART_AGE = 3600.0  # a .part file untouched this long, and unlocked, was left by a crash


def ref_for(sha256: str) -> str:
    return REF_PREFIX + sha256


def sha_from_ref(ref: str) -> str:
    """Accept ``ag://artifact/<sha>`` or a bare sha256; anything else is an error."""
    sha = ref[len(REF_PREFIX):] if ref.startswith(REF_PREFIX) else ref
    if not _SHA_RE.match(sha):
        raise StoreError(f"not an artifact ref: {ref!r} (expected {REF_PREFIX}<sha256>)")
    return sha


def check_name(name: str) -> str:
    """An artifact name is a relative path that stays inside wherever it is exported to."""
    if not isinstance(name, str) or not name:
        raise StoreError("artifact name must be a non-empty string")
    if "\x00" in name:
        raise StoreError(f"artifact name {name!r} contains a NUL byte")
    if len(name) > MAX_NAME:
        raise StoreError(f"artifact name is longer than {MAX_NAME} characters")
    if "\\" in name:
        raise StoreError(f"artifact name {name!r} contains a backslash; use '/'")
    p = PurePosixPath(name)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise StoreError(f"artifact name {name!r} is absolute; names must be relative")
    if any(part in ("..", ".", "") for part in name.split("/")):
        raise StoreError(f"artifact name {name!r} must not contain '.', '..' or end with '/'")
    return name


class BlobStore:
    def __init__(self, layout: StoreLayout) -> None:
        self.root = layout.artifacts_dir
        self.tmp = layout.tmp_dir

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.path_for(sha256)).st_mode)
        except OSError:
            return False

    def open_blob(self, sha256: str) -> int:
        """A read-only descriptor of the blob, opened folder by folder below ``artifacts/``
        without following any symlink, and only if it is a regular file."""
        ref = ref_for(sha256)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fds: list[int] = []
        try:
            fds.append(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for part in (sha256[:2], sha256[2:4]):
                fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
            fd = os.open(sha256, flags | os.O_NONBLOCK, dir_fd=fds[-1])  # a FIFO must not hang us
        except FileNotFoundError:
            raise StoreError(f"artifact {ref} is not in this store") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StoreError(f"artifact {ref}: its blob is not a regular file in the store "
                                 "(a symlink?); refusing to read it") from None
            raise StoreError(f"artifact {ref}: cannot read its blob: {exc.strerror}") from None
        finally:
            for d in fds:
                os.close(d)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"artifact {ref}: its blob is not a regular file in the store; "
                             "refusing to read it")
        os.set_blocking(fd, True)
        return fd

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha):
            self._install(sha, lambda f: f.write(data))
        return sha

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy (never move) a file in; return its sha256 and size."""
        h = hashlib.sha256()
        size = 0
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
        sha = h.hexdigest()
        if not self.has(sha):

            def copy(out):
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)

            self._install(sha, copy)
        return sha, size

    def _install(self, sha: str, write) -> None:
        final = self.path_for(sha)
        private_dirs(final.parent)
        private_dirs(self.tmp)
        tmp = self.tmp / f"{sha}.{os.getpid()}.{id(write)}.part"
        try:
            with open(tmp, "wb", opener=open_private) as f:
                fcntl.flock(f, fcntl.LOCK_EX)  # alive: not an orphan, whatever its age
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_bytes(self, sha256: str) -> bytes:
        with open(self.open_blob(sha256), "rb") as f:
            return f.read()

    def sweep_orphan_parts(self, max_age: float = ORPHAN_PART_AGE) -> int:
        """Remove the temporary files of blobs whose writer is gone: older than ``max_age``
        and not locked (a live writer holds an flock on its part for as long as it writes).
        Called when a runtime opens the store; returns how many were removed."""
        removed = 0
        try:
            entries = list(os.scandir(self.tmp))
        except FileNotFoundError:
            return 0
        now = time.time()
        for entry in entries:
            if not entry.name.endswith(".part"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if now - st.st_mtime < max_age:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    os.unlink(entry.path)  # nothing of ours is anything but a file here
                    removed += 1
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(entry.path)  # under the lock: no writer can be starting on it
                removed += 1
            except OSError:
                pass  # locked by a live writer, or gone already
            finally:
                os.close(fd)
        return removed
