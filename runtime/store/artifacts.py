"""Content-addressed blobs.

A blob lives at ``artifacts/ab/cd/<sha256>``: written to a temporary file, fsync'd, renamed into
place, and its folder fsync'd, so a reader never sees half a blob and a crash never leaves one
under its final name. The same bytes written twice are stored once. What a blob *is* (its name,
who wrote it, when) is not here: it is an ``artifact_written`` event in the run's log.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from ..errors import StoreError
from .layout import StoreLayout, open_private, private_dirs

REF_PREFIX = "ag://artifact/"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME = 255


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
        return self.path_for(sha256).is_file()

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
        path = self.path_for(sha256)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"artifact {ref_for(sha256)} is not in this store") from None
