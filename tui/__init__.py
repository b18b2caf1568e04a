"""``ag tui``: the terminal dashboard — the live view of runs and the channel people answer on.

Floor 3 of the layout: it imports ``runtime`` (the sidecar client, the store readers) and
``aethergraph`` (to host a run with ``--run``). Only ``ag tui`` reaches back into it: the CLI's
parser takes the dashboard's arguments from ``args`` (argparse only) and its dispatch runs
``app.main``.

Where things are: ``app`` (lifecycle, keys, folding the backend's facts into ``state``),
``actions`` (what the person asks for: the intents screens post), ``reads`` (store reads in
thread workers), ``backend``/``bridge`` (the trio side), ``screens``/``widgets`` (drawing),
``messages`` (everything they send each other).
"""
