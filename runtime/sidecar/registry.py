"""Live runtimes advertise themselves in the store, so clients can find them.

``runtimes/<runtime_id>.json`` says where a runtime listens (its unix socket, and its TCP port
when it has one), its pid and host, and which runs it is executing. It is written atomically and
removed on a clean exit. The TCP token lives beside it in a 0600 file and is never printed.

Who is alive is the owner lock's answer (``store/owner.py``), not the pid's: the runtime holds
the lock of ``sidecar <runtime_id>`` from before its advert is written until after it is
removed, and the kernel drops it when the process dies, so an advert left by a runtime killed
-9 reads stale even once another process has its pid (pids come round within minutes on a busy
box). Readers skip stale adverts and delete nothing; the next runtime that opens its sidecar on
the store removes them, with their sockets and tokens.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import stat
import tempfile
from pathlib import Path

import msgspec

from ..errors import AetherGraphError
from ..history import HOST, pid_alive
from ..store import owner
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
    # The runtime holds owner_key(runtime_id) for its life. False: an advert of an earlier
    # version, whose liveness only its pid can tell.
    locked: bool = False


_DECODER = msgspec.json.Decoder(Advert)
_RUNTIME_ID = re.compile(r"[0-9]+-[0-9a-f]+")  # new_runtime_id's shape: no path in it


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


def sweep_dead_sockets(folder: Path) -> int:
    """Remove the sockets in the shared socket folder that nobody listens on any more: those of
    runtimes killed -9 whose stores are gone or never opened again (a runtime of the store
    would remove them with their adverts). A runtime makes its socket visible under its final
    name only once it listens (``Sidecar``), so a refused connection means a dead one. For a
    runtime opening its sidecar there; how many were removed."""
    removed = 0
    for path in folder.glob("*.sock"):
        if not _RUNTIME_ID.fullmatch(path.stem):
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        except OSError:  # EAGAIN: alive, its backlog full; anything else: not ours to judge
            pass
        finally:
            probe.close()
    return removed


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
    try:
        with open(tmp, "wb", opener=open_private) as f:
            f.write(msgspec.json.encode(advert))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half advert behind
        raise


def remove_advert(layout: StoreLayout, advert: Advert) -> None:
    """Remove the advert and the socket and token it names — only where a runtime of this id
    puts them: an advert is text from another process, and its paths are not trusted."""
    rid = advert.runtime_id
    if not _RUNTIME_ID.fullmatch(rid):
        return
    folder = layout.runtimes_dir
    ours = {str(folder / f"{rid}.sock"), str(folder / f"{rid}.token"),
            str(Path(tempfile.gettempdir()) / f"aethergraph-{os.getuid()}" / f"{rid}.sock")}
    paths = [advert_path(layout, rid)] + [Path(p) for p in (advert.unix, advert.token_file) if p in ours]
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def owner_key(runtime_id: str) -> str:
    """The name the runtime's liveness lock is taken under (no run id has a space)."""
    return f"sidecar {runtime_id}"


def is_stale(advert: Advert, layout: StoreLayout) -> bool:
    """The advert's runtime is gone: on this host, nobody holds its lock (an advert of an
    earlier version: its pid is gone). One from another host is taken at its word."""
    if advert.host != HOST:
        return False
    if advert.locked:
        return owner.holder(layout, owner_key(advert.runtime_id)) is None
    return not pid_alive(advert.pid)


def _adverts(layout: StoreLayout) -> list[Advert]:
    out: list[Advert] = []
    folder = layout.runtimes_dir
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(_DECODER.decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
    return out


def live_adverts(layout: StoreLayout) -> list[Advert]:
    """Adverts of runtimes that may be alive. Stale ones are skipped, not removed: a reader
    never writes (``remove_stale_adverts`` is for a runtime opening the store)."""
    return [a for a in _adverts(layout) if not is_stale(a, layout)]


def remove_stale_adverts(layout: StoreLayout) -> int:
    """Remove what runtimes that died left in the store (advert, socket, token); for a runtime
    opening its sidecar, which holds its own lock already. How many were removed."""
    stale = [a for a in _adverts(layout) if is_stale(a, layout)]
    for advert in stale:
        remove_advert(layout, advert)
    return len(stale)
