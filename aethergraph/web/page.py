"""The HTML ``ag web`` serves: the dashboard page, and the refusal.

The page is ours: textual-serve's own loads a web font from Google (a request off the box,
which would also carry the page's address as referrer) and never focuses the terminal, so keys
typed before a click went nowhere. This one loads only ``/static`` from this server, and puts
the keyboard focus in the terminal as soon as the dashboard has drawn (and again on click and
when the window regains focus), so ``?`` opens help at once, as in a terminal.
"""

from __future__ import annotations

import html

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<style>
  html, body {{ margin: 0; height: 100%; background: #0c181f; overflow: hidden; }}
  #terminal {{ position: absolute; inset: 0; }}
  #ended {{ display: none; position: absolute; inset: 0; z-index: 10; align-items: center;
           justify-content: center; background: rgba(12, 24, 31, 0.85); color: #eee;
           font: 16px monospace; }}
  body.-closed #ended {{ display: flex; }}
</style>
<script src="/static/js/textual.js"></script>
</head>
<body>
<div id="terminal" class="textual-terminal" data-session-websocket-url="{ws_url}"
     data-font-size="{font_size}"></div>
<div id="ended">This dashboard session ended. Reload the page for a new one.</div>
<script>
(function () {{
  // textual.js makes the terminal in its window.onload; its keyboard input is xterm's hidden
  // textarea, which nothing focuses. Focus it once the app has drawn (the body gets
  // -first-byte then), blurring first so that xterm tells the app it has the focus.
  function textarea() {{ return document.querySelector(".xterm-helper-textarea"); }}
  function focusTerminal(force) {{
    var t = textarea();
    if (!t) return false;
    if (force && document.activeElement === t) t.blur();
    if (document.activeElement !== t) t.focus({{preventScroll: true}});
    return true;
  }}
  var drawn = new MutationObserver(function () {{
    if (document.body.classList.contains("-first-byte") && focusTerminal(true)) drawn.disconnect();
  }});
  drawn.observe(document.body, {{attributes: true, attributeFilter: ["class"]}});
  window.addEventListener("focus", function () {{ focusTerminal(false); }});
  document.addEventListener("mousedown", function () {{ focusTerminal(false); }}, true);
}})();
</script>
</body>
</html>
"""

REFUSED = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>403 Forbidden</title></head>
<body><h1>403 Forbidden</h1>
<p>This AetherGraph dashboard needs its token: open the URL that <code>ag web</code> printed
when it started (the token is also in the store, in <code>web.token</code>).</p></body></html>
"""


def dashboard_page(*, ws_url: str, title: str, font_size: int) -> str:
    return PAGE.format(ws_url=html.escape(ws_url, quote=True), title=html.escape(title),
                       font_size=font_size)
