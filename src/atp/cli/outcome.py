"""What a command produced, the exit codes, and the command tree every group adds to."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_status import rpc_status

from atp.client import AtpError, Client

EXIT_OK = 0

EXIT_FAILURE = 1  # The server (or the store) said no, or could not be reached.

EXIT_USAGE = 2  # The command line itself is wrong (argparse uses 2 too).

EXIT_INTERRUPTED = 130

@dataclass
class Outcome:
    """What a command produced: a JSON document for machines, text for people, an exit code."""

    document: Message | Mapping[str, Any]
    text: str
    exit_code: int = EXIT_OK
    # Said on stderr as "error: ..." after the output (e.g. a plan that could not be applied).
    error: str = ""
    # The command printed its output as it went (watch): nothing is left to print.
    streamed: bool = False

ClientCommand = Callable[[Client, argparse.Namespace], Outcome]

OfflineCommand = Callable[[argparse.Namespace], Outcome]

class CommandTree:
    """Adds commands and command groups, each with a one-line help and the global options."""

    def __init__(self, commands: Any, global_options: argparse.ArgumentParser) -> None:
        self._commands = commands
        self._global_options = global_options

    def group(self, name: str, help_text: str) -> CommandTree:
        parser = self._commands.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(command=None, group_parser=parser)
        return CommandTree(
            parser.add_subparsers(title="commands", metavar="COMMAND"), self._global_options
        )

    def command(
        self,
        name: str,
        help_text: str,
        run: ClientCommand | OfflineCommand,
        *,
        offline: bool = False,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._commands.add_parser(
            name, help=help_text, description=help_text, parents=[self._global_options]
        )
        parser.set_defaults(command=run, offline=offline)
        return parser


def json_document(document: Message | Mapping[str, Any]) -> Any:
    if isinstance(document, Message):
        # Zero values are printed too, so that a script reads 0 rather than a missing key.
        return json_format.MessageToDict(
            document,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    return dict(document)


def error_of_call(error: grpc.RpcError) -> AtpError:
    """The AtpError of a failed call made on the raw channel, with the details the server
    sent."""
    call: Any = error
    if not hasattr(call, "code"):
        return AtpError(grpc.StatusCode.UNKNOWN, str(error))
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        status = None
    if status is None:
        return AtpError(call.code(), call.details() or "")
    return AtpError.from_status(status)
