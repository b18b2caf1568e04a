"""Run-derived text made safe to show on a terminal.

Everything a run says — messages, ask prompts and options, log lines, error messages, node and
graph names, memory data, tags, artifact contents — is untrusted: a string holding
``\\x1b]0;…\\x07`` would retitle the window, ``\\x1b[2J`` would wipe the screen, U+202E would
make a file name read backwards. Both front ends (``ag`` and ``ag tui``) pass such text through
``visible`` (or ``one_line``) before it reaches a terminal, so control characters are *shown*,
never obeyed:

- C0 controls and DEL become their Unicode control pictures (ESC → ``␛``, CR → ``␍``, BEL → ``␇``);
- C1 controls (U+0080–U+009F, e.g. the one-byte CSI ``\\x9b``) become ``\\x9b``-style escapes
  (there are no pictures for them);
- bidirectional overrides and isolates, and the line/paragraph separators, become ``<U+202E>``.

Rich markup is a separate matter: these functions return plain ``str``; the caller must still
show it as plain text (``rich.text.Text(s)``, ``markup=False``), never parse it as markup.

Kept free of imports beyond the standard library: it is called per event while a run streams.
"""

from __future__ import annotations

import re

# Tab and newline are handled by the caller's choice (kept in multi-line text, replaced in a
# one-line cell); everything else below U+0020, DEL, C1, and the invisible direction changers.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _picture(m: re.Match[str]) -> str:
    c = m.group()
    o = ord(c)
    if o < 0x20:
        return chr(0x2400 + o)  # ␀ … ␟ (␛ for ESC, ␍ for CR, ␊ for LF, ␉ for tab)
    if o == 0x7F:
        return "\u2421"  # ␡
    if o <= 0x9F:
        return f"\\x{o:02x}"
    return f"<U+{o:04X}>"


def visible(text: str) -> str:
    """``text`` with every control character shown instead of obeyed; newlines and tabs kept
    (for multi-line views: a message, a preview, a traceback)."""
    if not isinstance(text, str):
        text = str(text)
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_picture, text)


def one_line(text: str) -> str:
    """``text`` for a one-line place (a table cell, a timeline row): tabs become spaces and
    newlines ``␊`` as well, so a line can never spill or be rewritten by a carriage return."""
    if not isinstance(text, str):
        text = str(text)
    if _UNSAFE_LINE.search(text) is None:
        return text
    return _UNSAFE_LINE.sub(lambda m: " " if m.group() == "\t" else _picture(m), text)


# A corpus of hostile strings, shared by the tests of both front ends.
HOSTILE = (
    "\x1b]0;pwned\x07",  # OSC: set the window title
    "\x1b]2;pwned\x1b\\",  # OSC ended by ST
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b[31;1mred\x1b[0m",  # SGR colours
    "\x9b2J",  # the one-byte (C1) CSI
    "\x9d0;pwned\x9c",  # C1 OSC … ST
    "before\rafter",  # carriage return rewriting the line
    "bell\x07 back\x08space del\x7f",
    "abc\u202edcba.exe",  # right-to-left override
    "\u2066isolate\u2069",
    "[red]markup[/]",  # Rich markup must stay literal
    "[bold]bold[/bold] [link=http://x]link[/link]",
)
