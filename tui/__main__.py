"""``python -m aethergraph.tui`` is ``ag tui``: handy when the console script is not on PATH."""

import sys

from .app import main

sys.exit(main(sys.argv[1:]))
