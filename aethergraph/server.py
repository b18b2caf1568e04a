"""The seed tutorial imports ``start`` from here; it is ``aethergraph.start``."""

from .api import StartInfo, start

__all__ = ["StartInfo", "start"]
