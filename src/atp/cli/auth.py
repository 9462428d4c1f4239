"""Commands for atpd's authorization (--auth-tokens, --auth-policy): hash-token."""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from atp.cli.outcome import EXIT_USAGE, CommandTree, Outcome

NEW_TOKEN_BYTES = 32


def add_auth_commands(tree: CommandTree) -> None:
    auth = tree.group("auth", "tokens for an atpd run with --auth-policy (no server needed)")
    command = auth.command(
        "hash-token", "print the SHA-256 of a token, as the --auth-tokens file stores it; the "
        "token is read from standard input (one line), or made up with --new", _hash_token,
        offline=True)
    command.add_argument("--principal", default="",
                         help="print the whole entry for the tokens file, with this principal")
    command.add_argument("--new", action="store_true",
                         help="make a new random token (printed once: hand it to the client)")


def _hash_token(arguments: argparse.Namespace) -> Outcome:
    if arguments.new:
        token = secrets.token_urlsafe(NEW_TOKEN_BYTES)
    else:
        token = sys.stdin.readline().strip()
        if not token:
            return Outcome({}, "", EXIT_USAGE, "no token on standard input")
    # Imported here: the server's authorization module brings the ledger with it (~0.15 s
    # of every atpctl start-up otherwise).
    from atp.server.authorization import hash_token

    digest = hash_token(token)
    entry = {"sha256": digest, "principal": arguments.principal}
    document: dict[str, str] = {"sha256": digest}
    if arguments.principal:
        document["entry"] = json.dumps(entry)
    if arguments.new:
        document["token"] = token
    text = "\n".join(f"{key}: {value}" for key, value in document.items()) if (
        arguments.new or arguments.principal) else digest
    return Outcome(document, text)
