"""`streamer serve`: the live WebRTC/WHIP server and its browser page.

aiohttp and aiortc are imported only when the command runs, so `streamer --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else requires --token)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: bundled tiny)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--token", default=None, metavar="SECRET",
                        help="bearer token required on every endpoint (the page takes ?token=SECRET)")
    parser.add_argument("--max-peers", type=int, default=8, metavar="N", help="concurrent peers (default 8)")
    parser.add_argument("--ice-server", action="append", default=[], metavar="URL",
                        help="STUN/TURN server for peers behind NAT, e.g. stun:stun.example.org:3478 "
                             "(repeatable; default none: host candidates only)")
    parser.add_argument("--resume-ttl", type=float, default=120.0, metavar="SECONDS",
                        help="how long a disconnected session waits for a reconnect carrying its id (default 120)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument("--cluster", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="step sessions on engine workers of a Ray cluster: no ADDRESS starts one on this "
                             "machine, 'auto' or ray://HOST:PORT joins one (needs streamer[cluster])")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="engine workers to start with --cluster, one per device (default 2)")


def main(args: argparse.Namespace) -> int:
    from streamer.serve.config import ServeConfig

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)  # one line per ICE check pair at INFO
    config = ServeConfig(host=args.host, port=args.port, checkpoint=args.checkpoint, device=args.device,
                         token=args.token, max_peers=args.max_peers, ice_servers=tuple(args.ice_server),
                         resume_ttl_s=args.resume_ttl)
    try:
        config.check()
    except ValueError as exc:
        print(f"streamer serve: {exc}", file=sys.stderr)
        return 2
    try:
        from aiohttp import web

        from streamer.serve.app import build_app
    except ImportError as exc:
        print(f"streamer serve: {exc.name} is missing; install the extra: pip install 'streamer[webrtc]'",
              file=sys.stderr)
        return 2
    from streamer.engine import CheckpointNotFound, Engine

    try:
        if args.cluster is None:
            engine = Engine.load(config.checkpoint, device=config.device)
        else:
            engine = _connect(args, config)
    except (CheckpointNotFound, ValueError, ImportError) as exc:
        print(f"streamer serve: {exc}", file=sys.stderr)
        return 2
    app = build_app(config, engine)
    shown = f"http://{config.host}:{config.port}/" + (f"?token={config.token}" if config.token else "")
    logging.getLogger("streamer.serve").info("serving the page at %s (WHIP: POST /whip)", shown)
    web.run_app(app, host=config.host, port=config.port, print=None, shutdown_timeout=5.0)
    return 0


def _connect(args: argparse.Namespace, config):
    """The cluster engine: this process stays the front (WebRTC, decoding, chunking); the model runs on workers."""
    from streamer.cluster import connect

    checkpoint = None if config.checkpoint is None else str(Path(config.checkpoint).resolve())
    address = None if args.cluster == "local" else args.cluster
    engine = connect(address, workers=args.workers, checkpoint=checkpoint, device=config.device)
    where = f"a local Ray cluster in {engine.local_folder}" if address is None else address
    logging.getLogger("streamer.serve").info("stepping sessions on %d cluster workers (%s)", len(engine.workers), where)
    return engine
