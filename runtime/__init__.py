"""The AetherGraph engine: runs, nodes, the event log and the store.

Floor 1 of the design. Nothing here imports ``aethergraph`` or ``tui``; both build on this.
Submodules are imported explicitly (``aethergraph.runtime.events``, ``aethergraph.runtime.engine``...) so that importing
this package stays free: ``import aethergraph`` must not pay for trio until a graph runs.
"""
