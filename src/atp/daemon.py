"""atpd: serve the ATP engine over gRPC with its ledger persisted in LMDB."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from atp.ledger import LedgerConfig
from atp.server.app import AtpServer, ServerConfig
from atp.store import StoreError


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ATP_{name}", default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="atpd",
        description="Serve the ATP engine. Every flag also reads an ATP_* environment variable.",
    )
    parser.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:50051"),
                        help="HOST:PORT to serve on (ATP_LISTEN; default %(default)s)")
    parser.add_argument("--data-dir", default=_env("DATA_DIR", "./data"),
                        help="LMDB data directory, created if missing (ATP_DATA_DIR)")
    parser.add_argument("--default-ttl", type=int, default=int(_env("DEFAULT_TTL", "900")),
                        help="seconds a HELD reservation lives without ttl_seconds (ATP_DEFAULT_TTL)")
    parser.add_argument("--sync", choices=("on", "off"), default=_env("SYNC", "on"),
                        help="on: every batch is fsynced before answering; off: survives a process "
                        "crash but may lose the last batches on power loss (ATP_SYNC)")
    parser.add_argument("--map-size-mb", type=int, default=int(_env("MAP_SIZE_MB", "8192")),
                        help="LMDB map size in MiB, the most the data may grow to (ATP_MAP_SIZE_MB)")
    parser.add_argument("--safety-stock-priority", type=int,
                        default=int(_env("SAFETY_STOCK_PRIORITY", "100")),
                        help="demand at or above this priority may use safety stock "
                        "(ATP_SAFETY_STOCK_PRIORITY)")
    parser.add_argument("--grace", type=float, default=float(_env("GRACE", "5")),
                        help="seconds to drain in-flight calls on SIGTERM (ATP_GRACE)")
    parser.add_argument("--journal-retention", type=int,
                        default=int(_env("JOURNAL_RETENTION", "0")),
                        help="newest journal events kept for Watch replay; 0 keeps all "
                        "(ATP_JOURNAL_RETENTION)")
    parser.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "0")),
                        help="serve Prometheus metrics at http://HOST:PORT/metrics on the "
                        "--listen host; 0 disables (ATP_METRICS_PORT)")
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING, ERROR (ATP_LOG_LEVEL)")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        listen=args.listen,
        data_dir=args.data_dir,
        sync=args.sync == "on",
        map_size_bytes=args.map_size_mb << 20,
        ledger=LedgerConfig(
            default_ttl_seconds=args.default_ttl,
            safety_stock_priority_min=args.safety_stock_priority,
        ),
        grace_seconds=args.grace,
        journal_retention_events=args.journal_retention,
        metrics_listen=(
            f"{args.listen.rsplit(':', 1)[0]}:{args.metrics_port}" if args.metrics_port else None
        ),
    )


async def serve(config: ServerConfig) -> int:
    server = AtpServer(config)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, lambda: loop.create_task(server.stop()))
    await server.start()
    # Tests and scripts read this line to learn the port when listening on port 0.
    print(f"atpd listening on {config.listen.rsplit(':', 1)[0]}:{server.port}", flush=True)
    await server.stopped.wait()
    logging.getLogger("atp.server").info("atpd stopped")
    return 1 if server.fatal_error else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code = asyncio.run(serve(config_from(args)))
    except (StoreError, OSError) as error:
        print(f"atpd: {error}", file=sys.stderr)
        return 2
    # Everything is committed and LMDB is closed: skip tearing down millions of ledger
    # objects one by one, which takes seconds on a large ledger and protects nothing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
