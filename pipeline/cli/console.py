"""``fleetcare console``: serve the evidence pages (one per lead and per vehicle), read-only."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from pathlib import Path

SubParsers = argparse._SubParsersAction
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register_console(sub: SubParsers) -> None:
    """``fleetcare console --db PATH [--host H] [--port N]``."""
    parser = sub.add_parser(
        "console", help="serve a read-only evidence page per lead and per vehicle",
        description="Web pages for service advisors: each lead's reasons in plain words, its "
                    "proposed slot and the vehicle's trend charts. Reads the store, never "
                    "writes it; a lead's evidence_url points at /leads/<lead_id>.")
    parser.add_argument("--db", type=Path,
                        help="the store to show: the serving store, or a one-file store "
                             "(default: $FLEETCARE_PIPELINE__DB_PATH, else ./fleet.duckdb)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine "
                             "only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free one (default: {DEFAULT_PORT}, "
                             "the port of the default console_base_url)")
    parser.set_defaults(handler=_serve)


def _db(args: argparse.Namespace) -> Path:
    from pipeline.config import load_pipeline_settings
    from pipeline.errors import StoreError

    path = Path(args.db) if args.db else load_pipeline_settings().db_path
    if not path.is_file():
        raise StoreError(f"no store at {path}: give the serving or one-file store with --db")
    return path


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound before the server starts so that a taken
    port is one clear line, not a server log."""
    from pipeline.errors import ConsoleError

    if not 0 <= port <= 65535:
        raise ConsoleError(f"--port {port} is not a port number (0 to 65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConsoleError(f"--host {host} cannot be resolved: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConsoleError(f"port {port} on {host} is already in use (another console?): "
                               "stop it or choose another --port") from None
        raise ConsoleError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def _serve(args: argparse.Namespace) -> int:
    from pipeline.console import create_app
    from pipeline.console.server import ConsoleServer
    from pipeline.foreground import run_until_terminated

    db = _db(args)
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    try:
        server = ConsoleServer(create_app(db), sock)
        print(f"fleetcare console: serving http://{shown}:{port}/ from {db} (read-only)",
              flush=True)
        run_until_terminated(server)
    finally:
        sock.close()
    print("fleetcare console: stopped", file=sys.stderr, flush=True)
    return 0
