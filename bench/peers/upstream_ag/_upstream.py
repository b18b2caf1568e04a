"""Set up upstream aethergraph 0.1.0a15 so it stays off the network and out of the repo.

Imported by every upstream script BEFORE ``import aethergraph``. run.py passes the same
environment; the defaults here make a script safe to run by hand too:

- a fresh temporary ``AETHERGRAPH_WORKSPACE`` (upstream writes SQLite stores, logs and a
  memory event log under it), which also becomes the working directory so upstream's ``.env``
  lookup (cwd, workspace, ``$XDG_CONFIG_HOME/aethergraph``) finds nothing of ours;
- ``AETHERGRAPH_SEARCH__BACKEND=none`` and ``AETHERGRAPH_KNOWLEDGE__SEARCH__BACKEND=none``: its
  default embeds every memory event through a remote API (~7 s stall per call offline), and the
  knowledge search backend refuses to build without an embedding client;
- ``AETHERGRAPH_LLM__ENABLED=false`` and ``AETHERGRAPH_EMBED__ENABLED=false``: no LLM or embedding
  clients are constructed. Channels are never used by these workloads.
"""

import os
import sys
import tempfile

OFFLINE_ENV = {
    "AETHERGRAPH_SEARCH__BACKEND": "none",
    "AETHERGRAPH_KNOWLEDGE__SEARCH__BACKEND": "none",
    "AETHERGRAPH_LLM__ENABLED": "false",
    "AETHERGRAPH_EMBED__ENABLED": "false",
}

for key, value in OFFLINE_ENV.items():
    os.environ.setdefault(key, value)
if not os.environ.get("AETHERGRAPH_WORKSPACE"):
    os.environ["AETHERGRAPH_WORKSPACE"] = tempfile.mkdtemp(prefix="ag-upstream-")
WORKSPACE = os.environ["AETHERGRAPH_WORKSPACE"]
os.environ.setdefault("XDG_CONFIG_HOME", WORKSPACE)
os.chdir(WORKSPACE)

import aethergraph  # noqa: E402

if aethergraph.__version__ != "0.1.0a15":
    sys.exit(f"expected upstream aethergraph 0.1.0a15, got {aethergraph.__version__} "
             f"from {aethergraph.__file__} (wrong virtualenv?)")
