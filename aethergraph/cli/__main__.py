"""``python -m aethergraph.cli``: the ``ag`` command with this interpreter.

Detached processes are started this way (``aethergraph.detach``). Not ``-m aethergraph.cli.main``:
that would load main.py twice (as ``__main__`` and as ``aethergraph.cli.main``), with two
``CliError`` classes, and a usage error would end in a traceback instead of its one line.
"""

from .main import entry

entry()
