"""What crosses ``ag web``'s two pipes, as msgspec Structs.

- Browser → server, over the websocket: textual.js's JSON arrays, ``["stdin", text]``,
  ``["resize", {"width": w, "height": h}]``, ``["ping", stamp]``, ``["focus"]``, ``["blur"]``
  (array-like Structs tagged by their first element). Untrusted: anything else is dropped.
- Server → dashboard, on its stdin: Textual's web-driver packets, ``D`` (terminal input) or
  ``M`` (a JSON meta object: resize, focus, blur, quit), each with a 4-byte big-endian length.
- Dashboard → server, on its stdout: the prelude line, then ``D`` (screen bytes), ``M`` (``exit``
  among others) and ``P`` (files for the browser; the dashboard offers none) packets.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Cells = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class Size(msgspec.Struct, frozen=True):
    width: Cells
    height: Cells


class Stdin(msgspec.Struct, array_like=True, tag="stdin", frozen=True):
    data: Annotated[str, msgspec.Meta(max_length=1 << 20)]


class Resize(msgspec.Struct, array_like=True, tag="resize", frozen=True):
    size: Size


class Ping(msgspec.Struct, array_like=True, tag="ping", frozen=True):
    stamp: Annotated[str, msgspec.Meta(max_length=64)]


class Focus(msgspec.Struct, array_like=True, tag="focus", frozen=True):
    pass


class Blur(msgspec.Struct, array_like=True, tag="blur", frozen=True):
    pass


FromBrowser = Stdin | Resize | Ping | Focus | Blur
_from_browser = msgspec.json.Decoder(FromBrowser)


def from_browser(data: str | bytes) -> FromBrowser | None:
    """A browser's message, or None for anything that is not one of them."""
    try:
        return _from_browser.decode(data)
    except msgspec.DecodeError:
        return None


class Meta(msgspec.Struct, frozen=True, omit_defaults=True):
    """A meta packet to the dashboard (Textual's web driver reads ``type`` and the rest)."""

    type: Literal["resize", "focus", "blur", "quit"]
    width: int | None = None
    height: int | None = None


class AppMeta(msgspec.Struct):
    """A meta packet from the dashboard: only its type matters here (``exit`` ends the tab)."""

    type: str = ""


_meta_encoder = msgspec.json.Encoder()
_app_meta = msgspec.json.Decoder(AppMeta)

PRELUDE = b"__GANGLION__\n"  # the web driver's first line: "a Textual app speaks from here"
MAX_PACKET = 64 << 20


def packet(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def meta_packet(meta: Meta) -> bytes:
    return packet(b"M", _meta_encoder.encode(meta))


def app_meta_type(payload: bytes) -> str:
    try:
        return _app_meta.decode(payload).type
    except msgspec.DecodeError:
        return ""
