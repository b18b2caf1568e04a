"""Set up upstream aethergraph 0.1.0a15 so it stays off the network and out of the repo.

Imported by every upstream script BEFORE ``import aethergraph`` (after bench/ is on sys.path).
run.py passes the same environment (``benchkit.peer_env``); the defaults here make a script safe
to run by hand too. The workspace also becomes the working directory, so upstream's ``.env``
lookup (cwd, workspace, ``$XDG_CONFIG_HOME/aethergraph``) finds nothing of ours and its relative
paths land in the temporary directory.
"""

import os
import sys
import tempfile

from benchkit.peer_env import OFFLINE_ENV, workspace_env

for key, value in OFFLINE_ENV.items():
    os.environ.setdefault(key, value)
if not os.environ.get("AETHERGRAPH_WORKSPACE"):
    os.environ.update(workspace_env(tempfile.mkdtemp(prefix="ag-upstream-")))
os.chdir(os.environ["AETHERGRAPH_WORKSPACE"])

import aethergraph  # noqa: E402

if aethergraph.__version__ != "0.1.0a15":
    sys.exit(f"expected upstream aethergraph 0.1.0a15, got {aethergraph.__version__} "
             f"from {aethergraph.__file__} (wrong virtualenv?)")
