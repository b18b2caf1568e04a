"""``ag tui``: the terminal dashboard — the live view of runs and the channel people answer on.

Floor 3 of the layout: it imports ``runtime`` (the sidecar client, the store readers) and
``aethergraph`` (to host a run with ``--run``); neither ever imports it back.
"""
