"""The entry point: the parser, running a command, printing its outcome."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import grpc

from atp.cli.allocation import add_policy_commands
from atp.cli.arguments import positive_float
from atp.cli.auth import add_auth_commands
from atp.cli.cluster import add_cluster_commands
from atp.cli.database import OfflineStoreError, add_database_commands
from atp.cli.events import add_health_command, add_kpi_command, add_watch_command
from atp.cli.inventory import (
    add_hold_commands,
    add_node_commands,
    add_safety_stock_commands,
    add_stock_commands,
    add_supply_commands,
)
from atp.cli.outcome import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ClientCommand,
    CommandTree,
    OfflineCommand,
    Outcome,
    json_document,
)
from atp.cli.quotas import add_quota_commands
from atp.cli.reservations import (
    add_at_risk_command,
    add_promise_command,
    add_reallocate_command,
    add_reservation_commands,
    add_reserve_command,
)
from atp.cli.server import add_server_commands
from atp.client import DEFAULT_TARGET, AtpError, Client, make_channel, with_token
from atp.tls import TlsFileError, TlsOptions


def main(argv: list[str] | None = None) -> int:
    """Runs one atpctl command; returns the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse exits on --help (0) and on bad usage (2).
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    if getattr(arguments, "command", None) is None:
        usage_parser = getattr(arguments, "group_parser", parser)
        usage_parser.print_usage(sys.stderr)
        return _fail("a command is required (see --help)", EXIT_USAGE)
    try:
        outcome = _run(arguments)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except AtpError as error:
        return _fail(_describe_atp_error(error, arguments.target,
                                         over_tls=bool(_tls_given(arguments))), EXIT_FAILURE)
    except OfflineStoreError as error:
        return _fail(str(error), EXIT_FAILURE)
    except grpc.RpcError as error:  # Only if something bypassed the client's translation.
        return _fail(f"{error}", EXIT_FAILURE)
    except TlsFileError as error:
        return _fail(str(error), EXIT_USAGE)
    except ValueError as error:  # A value the request cannot carry, e.g. an int32 overflow.
        return _fail(str(error), EXIT_USAGE)
    try:
        _print_outcome(outcome, as_json=arguments.json)
    except BrokenPipeError:
        # The reader went away (`atpctl ... | head`): say nothing more, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return outcome.exit_code

def _run(arguments: argparse.Namespace) -> Outcome:
    if arguments.offline:
        offline_command: OfflineCommand = arguments.command
        return offline_command(arguments)
    client_command: ClientCommand = arguments.command
    # The channel is ours, so that streaming commands (watch, kpi) can open Events.Watch with
    # every filter the server has on the same connection.
    # With several members, streams and cluster status use the first one.
    first = arguments.target.split(",")[0].strip()
    tls = tls_options(arguments)
    channel = make_channel(first, tls)
    try:
        with Client(arguments.target, timeout_s=arguments.timeout, channel=channel,
                    tls=tls, token=arguments.token) as client:
            arguments.grpc_channel = with_token(channel, arguments.token)
            return client_command(client, arguments)
    finally:
        channel.close()

def tls_options(arguments: argparse.Namespace) -> TlsOptions | None:
    """TLS when any of --tls-ca, --tls-cert, --tls-key is given (else plaintext)."""
    if not _tls_given(arguments):
        return None
    ca, cert, key = arguments.tls_ca, arguments.tls_cert, arguments.tls_key
    try:
        return TlsOptions(ca=ca or None, cert=cert or None, key=key or None,
                          server_name=arguments.tls_server_name or None)
    except ValueError as error:
        raise ValueError(f"--tls-cert and --tls-key go together: {error}") from None

def _fail(message: str, exit_code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return exit_code

def _describe_atp_error(error: AtpError, target: str, *, over_tls: bool = False) -> str:
    # A connection failure is raised by the channel itself, without any detail from a server.
    if error.code is grpc.StatusCode.UNAVAILABLE and not error.details:
        hint = connection_hint(error.message, over_tls)
        return f"cannot reach atpd at {target} (UNAVAILABLE)" + (f": {hint}" if hint else "")
    return str(error)


def _tls_given(arguments: argparse.Namespace) -> bool:
    return any(getattr(arguments, name, None) for name in ("tls_ca", "tls_cert", "tls_key"))


def connection_hint(message: str, over_tls: bool) -> str:
    """What a failed connection most likely means, from gRPC's own words for it (its last
    error), and what to try; "" when gRPC said nothing we recognise."""
    if "Connection refused" in message:
        return "nothing listens there; is atpd running, and is --target its --listen address?"
    if "CERTIFICATE_VERIFY_FAILED" in message:
        return ("its certificate is not signed by a CA atpctl trusts: give the CA that signed "
                "it with --tls-ca (or ATP_TLS_CA)")
    if "Hostname Verification" in message or "Peer name" in message:
        return ("its certificate does not name the host of --target: connect by a name it "
                "holds, or give that name with --tls-server-name")
    if "Socket closed" in message and over_tls:
        return ("it closed the connection during the TLS handshake: if atpd requires client "
                "certificates (--client-ca), give yours with --tls-cert and --tls-key; is it "
                "serving TLS at all?")
    if "Socket closed" in message:
        return ("it closed the connection: if atpd serves TLS (--tls-cert), connect with "
                "--tls-ca (and --tls-cert/--tls-key if it requires client certificates)")
    if "handshake" in message.lower():
        return "the TLS handshake failed (" + message.rsplit(": ", 1)[-1].strip() + ")"
    return ""

def _print_outcome(outcome: Outcome, *, as_json: bool) -> None:
    if outcome.streamed:
        pass
    elif as_json:
        print(json.dumps(json_document(outcome.document), indent=2, sort_keys=False))
    elif outcome.text:
        print(outcome.text)
    if outcome.error:
        sys.stdout.flush()
        _fail(outcome.error, outcome.exit_code)

def build_parser() -> argparse.ArgumentParser:
    """The whole atpctl command tree."""
    parser = argparse.ArgumentParser(
        prog="atpctl", description="Operate an ATP engine (atpd): stock, holds, reservations."
    )
    _add_global_options(parser, defaults=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    global_options = argparse.ArgumentParser(add_help=False)
    _add_global_options(global_options, defaults=False)
    tree = CommandTree(commands, global_options)
    add_node_commands(tree)
    add_stock_commands(tree)
    add_safety_stock_commands(tree)
    add_supply_commands(tree)
    add_hold_commands(tree)
    add_reservation_commands(tree)
    add_reserve_command(tree)
    add_promise_command(tree)
    add_at_risk_command(tree)
    add_reallocate_command(tree)
    add_policy_commands(tree)
    add_watch_command(tree)
    add_kpi_command(tree)
    add_health_command(tree)
    add_database_commands(tree)
    add_cluster_commands(tree)
    add_server_commands(tree)
    add_auth_commands(tree)
    add_quota_commands(tree)
    return parser

def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # The subcommands repeat the global options without defaults, so that they may be given
    # after the subcommand too (`atpctl stock get A --json`) without resetting earlier ones.
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(os.environ.get("ATP_TARGET", DEFAULT_TARGET)),
        help="atpd address host:port, or several members of a cluster comma separated (a write "
        "goes to the leader, a read moves on past a member that is down) (default: "
        f"$ATP_TARGET, else {DEFAULT_TARGET})",
    )
    for flag, variable, text in (
        ("--tls-ca", "ATP_TLS_CA", ("PEM CA certificate(s) to verify atpd against; connects "
         "over TLS (as --tls-cert does; without --tls-ca the system's roots are trusted)")),
        ("--tls-cert", "ATP_TLS_CERT", ("PEM client certificate to present (mutual TLS), with "
         "--tls-key")),
        ("--tls-key", "ATP_TLS_KEY", "PEM private key of --tls-cert"),
        ("--tls-server-name", "ATP_TLS_SERVER_NAME", ("verify atpd's certificate against this "
         "name instead of the --target host")),
    ):
        parser.add_argument(flag, default=default(os.environ.get(variable, "")), metavar=(
            "NAME" if flag == "--tls-server-name" else "FILE"),
                            help=f"{text} (default: ${variable})")
    parser.add_argument(
        "--token",
        default=default(os.environ.get("ATP_TOKEN", "")),
        help="bearer token sent with every call, for an atpd run with --auth-policy "
        "(default: $ATP_TOKEN; prefer the variable: a flag shows in the process list)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (protobuf field names) instead of tables",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=default(5.0),
        metavar="SECONDS",
        help="deadline of each call (default: 5)",
    )
