"""How a front end ends: the exit codes of ``ag`` and ``ag tui``, and the error that means
"what you asked for is wrong" (exit 2, one line, no traceback).

Imports nothing, so ``ag --help`` (which needs these to dispatch) stays as fast as argparse.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_HUNG_UP = 129  # 128 + SIGHUP, as a shell reports a process the hang-up ended
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class UsageError(Exception):
    """A problem with what the user asked for (a bad time, bad JSON, an unknown run id): one
    line for the person, exit 2. Never a bug of ours, so never a traceback."""
