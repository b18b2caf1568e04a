"""Live runtimes advertise themselves in the store, so clients can find them.

``runtimes/<runtime_id>.json`` says where a runtime listens (its unix socket, and its TCP port
when it has one), its pid and host, and which runs it is executing. It is written atomically,
removed on a clean exit, and recognised as stale when its pid is gone from this host (then
removed by whoever notices). The TCP token lives beside it in a 0600 file and is never printed.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import msgspec

from ..history import HOST, pid_alive
from ..store.layout import StoreLayout

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
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder / f"{runtime_id}.sock"


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
    tmp.write_bytes(msgspec.json.encode(advert))
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
