"""atpd: serve the ATP engine over gRPC with its ledger persisted in LMDB."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping

from atp import flags, limits, supervisor
from atp.bootstrap import AtpServer, ServerConfig
from atp.flags import FlagParser
from atp.ledger import LedgerConfig
from atp.ledger.allocation_policy import (
    CHANNEL_RANKS_MAX,
    AllocationPolicy,
    Criterion,
    parse_criteria,
    policy_problem,
)
from atp.ledger.errors import DamagedRecordError
from atp.ledger.validation import id_problem
from atp.server import authorization
from atp.store import StoreError
from atp.store.integrity import RESTORE_ADVICE
from atp.tls import ServerTls, TlsFileError, TlsOptions, check_ca, check_key_pair, is_loopback

# LMDB takes the map size as a C size_t: larger values overflow before it can refuse them.
MAP_SIZE_MB_MAX = sys.maxsize >> 20
# Priorities are int32 on the wire.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1


def build_parser(environ: Mapping[str, str] | None = None) -> FlagParser:
    """atpd's flags; each reads an ATP_* variable (from `environ`, else the process's)."""
    parser = FlagParser(
        prog="atpd", environ=environ,
        description="Serve the ATP engine. Every flag also reads an ATP_* environment variable.",
    )
    parser.add_flag("--listen", "ATP_LISTEN", flags.host_port, "127.0.0.1:50051",
                    "HOST:PORT to serve on; port 0 picks a free one", metavar="HOST:PORT")
    parser.add_flag("--data-dir", "ATP_DATA_DIR", flags.directory_path, "./data",
                    "LMDB data directory, created if missing", metavar="DIR")
    parser.add_flag("--default-ttl", "ATP_DEFAULT_TTL",
                    flags.whole_seconds_in_range(1, limits.ttl_seconds_max), "900",
                    "seconds a HELD reservation lives without ttl_seconds, 1s to 7d; "
                    "a unit may follow: 15m, 24h", metavar="SECONDS")
    parser.add_flag("--sync", "ATP_SYNC", flags.on_or_off, "on",
                    "on: every batch is fsynced before answering; off: survives a process "
                    "crash but may lose the last batches on power loss", metavar="{on,off}")
    parser.add_flag("--map-size-mb", "ATP_MAP_SIZE_MB",
                    flags.int_in_range(1, MAP_SIZE_MB_MAX), "1024",
                    "LMDB map size in MiB at start; it grows by itself as the data nears it, "
                    "up to --max-data-mb", metavar="MIB")
    parser.add_flag("--max-data-mb", "ATP_MAX_DATA_MB",
                    flags.int_in_range(1, MAP_SIZE_MB_MAX), "16384",
                    "the most the data may take, in MiB: near it, writes that add data are "
                    "refused (RESOURCE_EXHAUSTED, STORAGE_FULL) until retention frees space",
                    metavar="MIB")
    parser.add_flag("--safety-stock-priority", "ATP_SAFETY_STOCK_PRIORITY",
                    flags.int_in_range(PRIORITY_MIN, PRIORITY_MAX), "100",
                    "demand at or above this priority may use safety stock", metavar="PRIORITY")
    parser.add_flag("--allocation-policy", "ATP_ALLOCATION_POLICY", allocation_criteria,
                    "priority,fifo", "the server default allocation policy: criteria, comma "
                    "separated, from priority, channel_rank, value, due_date, fifo (ties: ids)",
                    metavar="CRITERIA")
    parser.add_flag("--allocation-channel-ranks", "ATP_ALLOCATION_CHANNEL_RANKS",
                    channel_ranks, "", "channels in the order the default policy's "
                    "channel_rank serves them, comma separated", metavar="CHANNELS")
    parser.add_flag("--grace", "ATP_GRACE", flags.parse_duration, "5",
                    "seconds to drain in-flight calls on SIGTERM; a unit may follow: 30s, 1m",
                    metavar="SECONDS")
    parser.add_flag("--journal-retention", "ATP_JOURNAL_RETENTION", flags.parse_duration,
                    "7d", "how long journal events are kept for Watch replay (and KPIs), "
                    "e.g. 7d, 24h; 0 sets no age limit", metavar="DURATION")
    parser.add_flag("--journal-retention-events", "ATP_JOURNAL_RETENTION_EVENTS",
                    flags.non_negative_int, "0",
                    "at most this many newest journal events are kept; 0 sets no count limit",
                    metavar="EVENTS")
    parser.add_flag("--closed-retention", "ATP_CLOSED_RETENTION", flags.parse_duration, "7d",
                    "how long a closed reservation stays readable and guards its id",
                    metavar="DURATION")
    parser.add_flag("--idempotency-window", "ATP_IDEMPOTENCY_WINDOW", flags.parse_duration,
                    "24h", "how long the request_id of AdjustStock, ReceiveSupply, Commit, "
                    "Release and Fulfill is honoured (a Reserve's reservation_id guards it "
                    "while open and for --closed-retention after)", metavar="DURATION")
    parser.add_flag("--clock-step-max", "ATP_CLOCK_STEP_MAX", flags.parse_duration, "60s",
                    "a forward step of the wall clock larger than this is logged as an error "
                    "and counted (atp_clock_steps_total)", metavar="DURATION")
    parser.add_flag("--metrics-port", "ATP_METRICS_PORT", flags.port, "0",
                    "serve Prometheus metrics at http(s)://METRICS_HOST:PORT/metrics (https: see "
                    "--metrics-tls); 0 disables",
                    metavar="PORT")
    parser.add_flag("--metrics-host", "ATP_METRICS_HOST", flags.host, "127.0.0.1",
                    "address to serve metrics on, whatever the --listen host", metavar="HOST")
    parser.add_flag("--concurrent-rpcs-max", "ATP_CONCURRENT_RPCS_MAX", flags.int_in_range(1),
                    str(limits.concurrent_rpcs_max), "unary calls served at once; more are "
                    "refused with RESOURCE_EXHAUSTED and a retry hint", metavar="CALLS")
    parser.add_flag("--follow", "ATP_FOLLOW", flags.optional_host_port, "",
                    "run as a follower of the leader at HOST:PORT: store and serve its "
                    "committed batches, refuse writes (NOT_LEADER); empty: lead",
                    metavar="HOST:PORT")
    parser.add_flag("--sync-replicas", "ATP_SYNC_REPLICAS", flags.int_in_range(0, 16), "0",
                    "followers that must have stored a write before it is answered (0: "
                    "asynchronous replication)", metavar="N")
    parser.add_flag("--sync-timeout", "ATP_SYNC_TIMEOUT", flags.parse_duration, "10s",
                    "how long a write waits for --sync-replicas followers before it fails "
                    "UNAVAILABLE (it stays on the leader and replicates later)",
                    metavar="DURATION")
    parser.add_flag("--replication-log-batches", "ATP_REPLICATION_LOG_BATCHES",
                    flags.int_in_range(1), str(limits.replication_log_batches_max),
                    "committed batches a leader keeps in memory for followers to stream; a "
                    "follower further behind takes a snapshot of the whole store instead",
                    metavar="N")
    parser.add_flag("--watch-queue-events", "ATP_WATCH_QUEUE_EVENTS",
                    flags.int_in_range(1), str(limits.watch_queue_events_max),
                    "events buffered for one Watch stream whose reader is slow; one further "
                    "behind is ended RESOURCE_EXHAUSTED with the sequence to resume after "
                    "(it resumes from the journal)", metavar="N")
    parser.add_flag("--advertise", "ATP_ADVERTISE", flags.optional_host_port, "",
                    "HOST:PORT others reach this member at (its name to its leader); "
                    "default: --listen", metavar="HOST:PORT")
    parser.add_flag("--cluster", "ATP_CLUSTER", cluster_name, "",
                    "run as a member of the cluster NAME, coordinated by etcd (--etcd): the "
                    "members elect a leader under /atp/NAME/ and the others follow it",
                    metavar="NAME")
    parser.add_flag("--etcd", "ATP_ETCD", etcd_endpoints, "",
                    "etcd's client endpoints for --cluster, comma separated",
                    metavar="URL[,URL]")
    parser.add_flag("--lease-ttl", "ATP_LEASE_TTL", flags.whole_seconds_in_range(2, 300), "10s",
                    "the leader's etcd lease: a leader that cannot renew it stops confirming "
                    "writes before it ends, and a follower takes over after it ends",
                    metavar="DURATION")
    parser.add_flag("--max-lag-on-failover", "ATP_MAX_LAG_ON_FAILOVER", flags.non_negative_int,
                    "1000", "with asynchronous replication (--sync-replicas 0), how many "
                    "commits behind the last leader a member may be and still take over",
                    metavar="COMMITS")
    parser.add_flag("--auth-policy", "ATP_AUTH_POLICY", auth_policy_file, "",
                    "JSON file mapping principals to roles (deny rules, then allow rules); "
                    "re-read when it changes. Empty: every caller may do everything",
                    metavar="FILE")
    parser.add_flag("--auth-tokens", "ATP_AUTH_TOKENS", auth_tokens_file, "",
                    "JSON file of bearer tokens' SHA-256 hashes and their principals (needs "
                    "--auth-policy); re-read when it changes", metavar="FILE")
    parser.add_flag("--peer-token-file", "ATP_PEER_TOKEN_FILE", peer_token_file, "",
                    "file holding the bearer token this member presents to its leader "
                    "(Replicate, Snapshot: the replica role) when the leader runs with "
                    "--auth-policy", metavar="FILE")
    parser.add_flag("--tls-cert", "ATP_TLS_CERT", flags.optional_path, "",
                    "PEM certificate (chain) to serve TLS with, with --tls-key; read again when "
                    "the file changes; empty: plaintext, on loopback only (see --insecure)",
                    metavar="FILE")
    parser.add_flag("--tls-key", "ATP_TLS_KEY", flags.optional_path, "",
                    "PEM private key of --tls-cert", metavar="FILE")
    parser.add_flag("--client-ca", "ATP_CLIENT_CA", flags.optional_path, "",
                    "PEM CA certificate(s): clients must present a certificate it signed "
                    "(mutual TLS); empty: no client certificate asked", metavar="FILE")
    parser.add_flag("--peer-ca", "ATP_PEER_CA", flags.optional_path, "",
                    "PEM CA certificate(s) a follower verifies its leader against (it presents "
                    "--tls-cert to it); default: --client-ca, else the system's roots",
                    metavar="FILE")
    parser.add_flag("--metrics-tls", "ATP_METRICS_TLS", auto_on_or_off, "auto",
                    "serve /metrics over HTTPS with --tls-cert (and require client "
                    "certificates with --client-ca); auto: on when --tls-cert is given",
                    metavar="{auto,on,off}")
    parser.add_switch("--insecure", "ATP_INSECURE",
                      "allow plaintext (no --tls-cert) gRPC or metrics on an address other than "
                      "loopback: anyone who reaches it may read and change the ledger")
    parser.add_flag("--etcd-ca", "ATP_ETCD_CA", flags.optional_path, "",
                    "PEM CA certificate(s) to verify etcd against; reaches etcd over TLS "
                    "(https:// endpoints do too, against the system's roots by default)",
                    metavar="FILE")
    parser.add_flag("--etcd-cert", "ATP_ETCD_CERT", flags.optional_path, "",
                    "PEM client certificate to present to etcd, with --etcd-key", metavar="FILE")
    parser.add_flag("--etcd-key", "ATP_ETCD_KEY", flags.optional_path, "",
                    "PEM private key of --etcd-cert", metavar="FILE")
    parser.add_flag("--gateways", "ATP_GATEWAYS", supervisor.gateway_count, "auto",
                    "gateway processes sharing --listen (SO_REUSEPORT) in front of one writer "
                    "process: reads answered by the gateways, writes forwarded to the writer; "
                    "auto: cores - 1 (at least 1; the cores capped by a cgroup CPU quota), or "
                    "one process with --cluster or --follow; "
                    "0: one process", metavar="N")
    parser.add_flag("--gateway-journal-events", "ATP_GATEWAY_JOURNAL_EVENTS",
                    flags.int_in_range(1), str(limits.gateway_journal_events),
                    "newest journal events each gateway keeps in memory for Watch (a Watch "
                    "from before them is replayed by the writer)", metavar="EVENTS")
    # A child of `atpd --gateways N` (atp/supervisor.py): its role, the writer's socket, and
    # which gateway it is. Set by the supervisor only.
    parser.add_argument("--gateway-role", choices=supervisor.ROLES, default="",
                        help=argparse.SUPPRESS)
    parser.add_argument("--writer-socket", default="", help=argparse.SUPPRESS)
    parser.add_argument("--gateway-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_flag("--log-level", "ATP_LOG_LEVEL", flags.log_level, "INFO",
                    f"one of {', '.join(flags.LOG_LEVELS)}", metavar="LEVEL")
    return parser


def parse_args(argv: list[str] | None, environ: Mapping[str, str] | None = None,
               ) -> argparse.Namespace:
    """The flags, validated: a bad value ends the process with one line and exit code 2."""
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    args.gateways_auto = args.gateways == supervisor.AUTO_GATEWAYS
    args.gateways = supervisor.resolved_gateways(args)
    conflict = (flag_conflict(args) or allocation_policy_conflict(args)
                or supervisor.gateway_conflict(args) or tls_conflict(args)
                or tls_file_problem(args))
    if conflict:
        parser.error(conflict)
    return args


def auto_on_or_off(text: str) -> str:
    """'auto', 'on' or 'off', in any case; returned in lower case."""
    return "auto" if text.strip().lower() == "auto" else flags.on_or_off(text)


def tls_conflict(args: argparse.Namespace) -> str:
    """Why the transport-security flags cannot go together, or why a plaintext address is
    refused ("" when all is well). Plaintext is for loopback only unless --insecure: like
    Redis's protected mode, a forgotten flag must not publish the ledger to the network."""
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together: give both (or neither, for plaintext)"
    for flag, given in (("--client-ca", args.client_ca), ("--peer-ca", args.peer_ca)):
        if given and not args.tls_cert:
            return f"{flag} needs --tls-cert and --tls-key (it is part of serving TLS)"
    if args.metrics_tls == "on" and not args.tls_cert:
        return "--metrics-tls on needs --tls-cert and --tls-key (it serves with them)"
    if bool(args.etcd_cert) != bool(args.etcd_key):
        return "--etcd-cert and --etcd-key go together: give both (or neither)"
    if (args.etcd_ca or args.etcd_cert) and not args.cluster:
        return "--etcd-ca, --etcd-cert and --etcd-key need --cluster and --etcd"
    if (args.etcd_ca or args.etcd_cert) and not args.etcd.startswith("https://"):
        return "--etcd-ca/--etcd-cert reach etcd over TLS: give https:// endpoints"
    if args.insecure:
        return ""
    remedy = ("serve TLS with --tls-cert and --tls-key, or give --insecure to serve plaintext "
              "anyway")
    host = args.listen.rsplit(":", 1)[0]
    if not args.tls_cert and not is_loopback(host):
        return (f"--listen {args.listen} is not a loopback address and there is no --tls-cert: "
                f"anyone who reaches it could read and change the ledger; {remedy}")
    if args.metrics_port and not metrics_tls_on(args) and not is_loopback(args.metrics_host):
        return (f"--metrics-host {args.metrics_host} is not a loopback address and metrics are "
                f"served without TLS: anyone who reaches it could read them; {remedy}")
    return ""


def metrics_tls_on(args: argparse.Namespace) -> bool:
    return bool(args.tls_cert) and args.metrics_tls != "off"


def tls_file_problem(args: argparse.Namespace) -> str:
    """Why a certificate, key or CA file given cannot be used ("" when all can)."""
    try:
        if args.tls_cert:
            check_key_pair(args.tls_cert, args.tls_key)
        if args.etcd_cert:
            check_key_pair(args.etcd_cert, args.etcd_key)
        for path in (args.client_ca, args.peer_ca, args.etcd_ca):
            if path:
                check_ca(path)
    except TlsFileError as error:
        return str(error)
    return ""


def flag_conflict(args: argparse.Namespace) -> str:
    """Why flags that are each valid cannot go together ("" when they can)."""
    if args.auth_tokens and not args.auth_policy:
        return "--auth-tokens needs --auth-policy (which says what each principal may do)"
    if not args.cluster:
        return "--etcd needs --cluster" if args.etcd else ""
    if args.follow:
        return "--follow and --cluster exclude each other: a cluster member finds its leader"
    if not args.etcd:
        return "--cluster needs --etcd HOST:PORT[,HOST:PORT]"
    if (args.advertise or args.listen).rsplit(":", 1)[1] == "0":
        return ("--cluster needs the address other members reach this one at: --advertise "
                "HOST:PORT, or a --listen with a fixed port")
    return ""


def allocation_criteria(text: str) -> tuple[Criterion, ...]:
    """--allocation-policy: criterion names, comma separated, any case."""
    try:
        return parse_criteria(text)
    except ValueError as error:
        raise flags.InvalidValue(str(error)) from None


def channel_ranks(text: str) -> tuple[str, ...]:
    """--allocation-channel-ranks: channel names, comma separated, each once."""
    channels = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(channels) > CHANNEL_RANKS_MAX:
        raise flags.InvalidValue(f"{len(channels)} channels; at most {CHANNEL_RANKS_MAX}")
    if len(set(channels)) != len(channels):
        raise flags.InvalidValue("each channel may be ranked once")
    for channel in channels:
        problem = id_problem(channel)
        if problem:
            raise flags.InvalidValue(f"channel {channel!r}: {problem}")
    return channels


def allocation_policy_conflict(args: argparse.Namespace) -> str:
    """Why --allocation-policy and --allocation-channel-ranks cannot go together ("" when
    they can)."""
    problem = policy_problem(AllocationPolicy(args.allocation_policy,
                                              args.allocation_channel_ranks))
    if not problem:
        return ""
    return ("--allocation-policy names channel_rank: give --allocation-channel-ranks too"
            if args.allocation_channel_ranks == () else
            "--allocation-channel-ranks is used only when --allocation-policy names "
            "channel_rank")


def cluster_name(text: str) -> str:
    """Letters, digits, '-', '_' and '.': it becomes part of etcd keys."""
    name = text.strip()
    if name and not all(char.isalnum() or char in "-_." for char in name):
        raise flags.InvalidValue(
            f"{text!r} is not a cluster name: use letters, digits, '-', '_' and '.'")
    return name


def auth_policy_file(text: str) -> str:
    """A policy file that loads ("" for none): a bad one stops atpd at start."""
    return _auth_file(text, authorization.load_policy)


def auth_tokens_file(text: str) -> str:
    """A tokens file that loads ("" for none)."""
    return _auth_file(text, authorization.load_tokens)


def _auth_file(text: str, load: Callable[[str], object]) -> str:
    path = text.strip()
    if path:
        try:
            load(path)
        except authorization.AuthFileError as error:
            raise flags.InvalidValue(f"{text!r}: {error}") from None
    return path


def peer_token_file(text: str) -> str:
    """The path of a file holding one token ("" for none); it must be readable and hold
    a token of printable characters without spaces."""
    path = text.strip()
    if path:
        read_peer_token(path)
    return path


def read_peer_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise flags.InvalidValue(
            f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    if not token or any(char.isspace() or not char.isprintable() for char in token):
        raise flags.InvalidValue(f"{path} does not hold one token (printable characters "
                                 "without spaces)")
    return token


def etcd_endpoints(text: str) -> str:
    """[http[s]://]HOST:PORT[,...] ("" for none): http:// is dropped, https:// kept (etcd over
    TLS); one scheme for all."""
    endpoints = [part.strip() for part in text.split(",") if part.strip()]
    secure = [part.startswith("https://") for part in endpoints]
    if any(secure) and not all(secure):
        raise flags.InvalidValue(f"{text!r} mixes https:// and plaintext endpoints")
    scheme = "https://" if any(secure) else ""
    return ",".join(scheme + flags.host_port(part.removeprefix("https://").removeprefix(
        "http://")) for part in endpoints)


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        listen=args.listen,
        data_dir=args.data_dir,
        sync=args.sync == "on",
        map_size_bytes=args.map_size_mb << 20,
        max_data_bytes=args.max_data_mb << 20,
        ledger=LedgerConfig(
            default_ttl_seconds=args.default_ttl,
            safety_stock_priority_min=args.safety_stock_priority,
            closed_retention_s=args.closed_retention,
            idempotency_window_s=args.idempotency_window,
            allocation_policy=AllocationPolicy(args.allocation_policy,
                                               args.allocation_channel_ranks),
        ),
        journal_retention_s=args.journal_retention,
        clock_step_max_s=args.clock_step_max,
        grace_seconds=args.grace,
        journal_retention_events=args.journal_retention_events,
        gateway_journal_events=args.gateway_journal_events,
        concurrent_rpcs_max=args.concurrent_rpcs_max,
        follow=args.follow,
        sync_replicas=args.sync_replicas,
        sync_timeout_s=args.sync_timeout,
        replication_log_batches=args.replication_log_batches,
        watch_queue_events=args.watch_queue_events,
        advertise=args.advertise or args.listen,
        cluster=args.cluster,
        etcd=args.etcd,
        lease_ttl_s=args.lease_ttl,
        max_lag_on_failover=args.max_lag_on_failover,
        auth_policy=args.auth_policy,
        auth_tokens=args.auth_tokens,
        peer_token=read_peer_token(args.peer_token_file) if args.peer_token_file else "",
        metrics_listen=(
            flags.join_host_port(args.metrics_host, args.metrics_port)
            if args.metrics_port else None
        ),
        tls=ServerTls(args.tls_cert, args.tls_key, args.client_ca or None)
        if args.tls_cert else None,
        # A follower presents its own certificate and verifies its leader against the peer CA.
        peer_tls=TlsOptions(ca=args.peer_ca or args.client_ca or None, cert=args.tls_cert,
                            key=args.tls_key) if args.tls_cert else None,
        metrics_tls=metrics_tls_on(args),
        etcd_tls=TlsOptions(ca=args.etcd_ca or None, cert=args.etcd_cert or None,
                            key=args.etcd_key or None)
        if args.etcd_ca or args.etcd_cert or args.etcd.startswith("https://") else None,
    )


def warn_of_bare_journal_retention(argv: list[str], environ: Mapping[str, str]) -> None:
    """--journal-retention counted events before it became a duration: a bare number is now
    seconds, which an old setting would silently shorten or lengthen."""
    given = environ.get("ATP_JOURNAL_RETENTION", "")
    for index, word in enumerate(argv):
        if word == "--journal-retention" and index + 1 < len(argv):
            given = argv[index + 1]
        elif word.startswith("--journal-retention="):
            given = word.partition("=")[2]
    if given.strip().isdigit() and int(given) != 0:
        logging.getLogger("atp.server").warning(
            "--journal-retention %s is read as %s seconds (it used to count events: for a "
            "count, use --journal-retention-events)", given.strip(), int(given))


async def serve(config: ServerConfig, supervisor_pid: int = 0) -> int:
    server = AtpServer(config)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, lambda: loop.create_task(server.stop()))
    await server.start()
    if supervisor_pid:  # a child of `atpd --gateways N`: stops if its supervisor is gone
        watch = loop.create_task(supervisor.stop_when_orphaned(supervisor_pid, server.stop))
    # Tests and scripts read this line to learn the port when listening on port 0.
    print(f"atpd listening on {config.listen.rsplit(':', 1)[0]}:{server.port}", flush=True)
    await server.stopped.wait()
    if supervisor_pid:
        watch.cancel()
    logging.getLogger("atp.server").info("atpd stopped")
    return 1 if server.fatal_error else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format=supervisor.log_format(args))
    given = sys.argv[1:] if argv is None else argv
    warn_of_bare_journal_retention(given, os.environ)
    if args.gateways and not args.gateway_role:
        return supervisor.run(args, given)
    config, supervisor_pid = config_from(args), 0
    if args.gateway_role:
        config, supervisor_pid = supervisor.child_config(config, args), os.getppid()
        supervisor.die_with_supervisor(supervisor_pid)
    try:
        code = asyncio.run(serve(config, supervisor_pid))
    except (StoreError, OSError, TlsFileError) as error:
        print(f"atpd: {error}", file=sys.stderr)
        return 2
    except DamagedRecordError as error:  # found while loading the ledger at start-up
        print(f"atpd: {args.data_dir} is damaged: {error}; {RESTORE_ADVICE}", file=sys.stderr)
        return 2
    # Everything is committed and LMDB is closed: skip tearing down millions of ledger
    # objects one by one, which takes seconds on a large ledger and protects nothing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
