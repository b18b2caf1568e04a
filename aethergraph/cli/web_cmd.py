"""``ag web``: the dashboard in a browser (see ``aethergraph.web``)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import socket
import sys

from aethergraph.runtime.exits import EXIT_INTERRUPTED
from aethergraph.runtime.store.layout import resolve_home

from ..web.auth import TokenProblem, load_or_create
from ..web.server import serve
from .main import CliError


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_web(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    try:
        token, how = load_or_create(home)
    except TokenProblem as exc:
        raise CliError(str(exc)) from None
    if how.startswith("replaced"):
        print(f"ag web: warning: {home / 'web.token'} {how}; a new token", file=sys.stderr)
    if not _loopback(args.host):
        print(f"ag web: warning: listening on {args.host}, not loopback: anyone who can reach "
              "this port and has the token sees the dashboard, over plain HTTP "
              "(an SSH tunnel to 127.0.0.1 is the safer way)", file=sys.stderr)
    try:
        return asyncio.run(serve(home, token, args.host, args.port, sys.stdout, sys.stderr))
    except socket.gaierror as exc:
        raise CliError(f"--host {args.host}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {args.port} on {args.host} is in use (another ag web?); "
                           "choose another with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise CliError(f"--host {args.host} is not an address of this machine") from None
        raise
    except KeyboardInterrupt:  # Ctrl-C before the server's own handler was in place
        return EXIT_INTERRUPTED
