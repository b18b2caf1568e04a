"""The token that every ``ag web`` request must carry, kept in ``<home>/web.token``.

Kept across restarts, so a bookmarked URL keeps working for as long as the store does; delete
the file to revoke every browser that has it (the next ``ag web`` makes a new one). It lives in
the store because whoever may read the store may see its dashboard, and nobody else: on a
shared box other users reach 127.0.0.1 too. Created 0600 in one step (``O_EXCL``); a file
that others could read is treated as leaked and replaced.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from aethergraph.runtime.store.layout import FILE_MODE, private_dirs

TOKEN_FILE = "web.token"
_TOKEN_BYTES = 32  # 256 bits, URL-safe base64: 43 characters


class TokenProblem(Exception):
    """The token file cannot be used: one line for the user."""


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def _valid(text: str) -> bool:
    return len(text) >= 32 and all(c.isalnum() or c in "-_" for c in text)


def load_or_create(home: Path) -> tuple[str, str]:
    """The store's token and what happened: ``"kept"``, ``"new"`` or ``"replaced (...)"``."""
    private_dirs(home)
    path = token_path(home)
    why = "new"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise TokenProblem(f"{path} is not a regular file; move it away and start again")
        if st.st_uid != os.getuid():
            raise TokenProblem(f"{path} belongs to another user (uid {st.st_uid}); "
                               "move it away and start again")
        text = path.read_text(encoding="ascii", errors="replace").strip()
        if st.st_mode & 0o077:
            why = f"replaced (it was readable by others: mode {stat.S_IMODE(st.st_mode):o})"
        elif not _valid(text):
            why = "replaced (it did not hold a token)"
        else:
            return text, "kept"
        path.unlink()
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token, why


def same_token(given: str | None, token: str) -> bool:
    """Constant-time comparison (of bytes: ``compare_digest`` refuses non-ASCII str)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())
