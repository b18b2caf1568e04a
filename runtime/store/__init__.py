"""The embedded store under ``./.aethergraph/`` (or ``$AETHERGRAPH_HOME``).

- ``runs/YYYY/MM/<run_id>.jsonl``: the event logs, append-only, the source of truth;
- ``index.sqlite``: derived from the logs, rebuildable at any time;
- ``artifacts/``: content-addressed blobs;
- ``kv.sqlite``: the small persistent key-value store.
"""
