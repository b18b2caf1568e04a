"""``ag web``: the dashboard in a browser (see ``aethergraph.web``)."""

from __future__ import annotations

import argparse
import sys

from .main import EXIT_INTERRUPTED, CliError

DEFAULT_PORT = 8740


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {n}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--home", help="store directory (default: $AETHERGRAPH_HOME or ./.aethergraph)")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_web(args: argparse.Namespace) -> int:
    import asyncio
    import errno
    import socket

    from aethergraph.runtime.store.layout import resolve_home

    from ..web.auth import TokenProblem, load_or_create
    from ..web.server import serve

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
