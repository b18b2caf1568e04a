"""Live runtimes advertise themselves in the store, so clients can find them.

``runtimes/<runtime_id>.json`` says where a runtime listens (its unix socket, and its TCP port
when it has one), its pid and host, and which runs it is executing. It is written atomically,
removed on a clean exit, and recognised as stale when its pid is gone from this host (then
removed by whoever notices). The TCP token lives beside it in a 0600 file and is never printed.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

import msgspec

from ..errors import AetherGraphError
from ..history import HOST, pid_alive
from ..store.layout import StoreLayout, open_private

# A unix socket path must fit in sockaddr_un (108 bytes on Linux, with the NUL).
MAX_UNIX_PATH = 100


class Advert(msgspec.Struct, kw_only=True):
    runtime_id: str
    pid: int
    host: str
    started: float
    protocol: int
    unix: str = ""
    tcp: str = ""  # "127.0.0.1:PORT"
    token_file: str = ""
    home: str = ""
    runs: list[str] = []


_DECODER = msgspec.json.Decoder(Advert)


def new_runtime_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(3)}"


def advert_path(layout: StoreLayout, runtime_id: str) -> Path:
    return layout.runtimes_dir / f"{runtime_id}.json"


def socket_path(layout: StoreLayout, runtime_id: str) -> Path:
    """In the store when the path fits; else in a private folder under the temp dir."""
    path = layout.runtimes_dir / f"{runtime_id}.sock"
    if len(str(path)) <= MAX_UNIX_PATH:
        return path
    folder = Path(tempfile.gettempdir()) / f"aethergraph-{os.getuid()}"
    return private_folder(folder) / f"{runtime_id}.sock"


class SocketFolderError(AetherGraphError):
    """The folder for a runtime's socket is not provably ours and private; it is not used."""


def private_folder(folder: Path) -> Path:
    """``folder``, created here (0700) or checked: a real directory (not a symlink), ours, and
    closed to group and others. The temp dir is shared: anyone may have made this name first,
    to receive our clients' handshakes and tokens, so anything else is refused."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SocketFolderError(f"cannot create the socket folder {folder}: {exc.strerror}") from None
    st = os.lstat(folder)
    fix = ("; remove it, or use a store with a shorter path (AETHERGRAPH_HOME) so the socket "
           "lives in the store")
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise SocketFolderError(f"socket folder {folder} is not a directory (a symlink?); not using it{fix}")
    if st.st_uid != os.getuid():
        raise SocketFolderError(
            f"socket folder {folder} belongs to uid {st.st_uid}, not {os.getuid()}; not using it{fix}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SocketFolderError(
            f"socket folder {folder} has mode {stat.S_IMODE(st.st_mode):o}: open to other users; "
            f"not using it{fix}")
    return folder


def write_token(layout: StoreLayout, runtime_id: str) -> tuple[Path, str]:
    token = secrets.token_urlsafe(32)
    path = layout.runtimes_dir / f"{runtime_id}.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path, token


def read_token(advert: Advert) -> str:
    if not advert.token_file:
        return ""
    return Path(advert.token_file).read_text().strip()


def write_advert(layout: StoreLayout, advert: Advert) -> None:
    path = advert_path(layout, advert.runtime_id)
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "wb", opener=open_private) as f:
        f.write(msgspec.json.encode(advert))
    os.replace(tmp, path)


def remove_advert(layout: StoreLayout, advert: Advert) -> None:
    for p in (advert_path(layout, advert.runtime_id), Path(advert.unix) if advert.unix else None,
              Path(advert.token_file) if advert.token_file else None):
        if p is not None:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def is_stale(advert: Advert) -> bool:
    return advert.host == HOST and not pid_alive(advert.pid)


def live_adverts(layout: StoreLayout, *, clean: bool = True) -> list[Advert]:
    """Adverts of runtimes that may be alive; stale ones are ignored (and removed)."""
    out: list[Advert] = []
    folder = layout.runtimes_dir
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            advert = _DECODER.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
        if is_stale(advert):
            if clean:
                remove_advert(layout, advert)
            continue
        out.append(advert)
    return out
