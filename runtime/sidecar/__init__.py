"""The sidecar: a runtime's live face to other processes.

A trio-websocket server inside the runtime's nursery, on a 0600 unix socket in the store (and,
only when asked, on loopback TCP with a token). Clients — ``ag tail``, ``ag answer``, the
dashboard — subscribe to events (a snapshot from the log, then live) and send commands: answer
an ask, cancel a run or node, retry a node. Each live runtime advertises itself under
``runtimes/`` in the store so clients can find it.
"""
