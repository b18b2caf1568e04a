"""``ag web``: the ``ag tui`` dashboard served to browsers.

The browser half is textual-serve's ``textual.js`` (xterm.js plus the client side of Textual's
web-driver protocol). The server half is ours (``server.py``): every HTTP request and websocket
upgrade passes a token check first, each websocket gets its own ``ag tui`` process
(``__main__.py``) that ends with it, and nothing logs a URL. Nothing is imported here, so
``python -m aethergraph.web`` (a session) does not load the server's aiohttp stack.
"""
