"""The checks of a command that need nothing but the command: a gateway of `atpd
--gateways N` runs them before sending the command to the writer, so that bad input is
refused where it arrived and costs the writer nothing.

They are the ledger's own checks (validation.py), which the ledger runs again; only what
depends on the ledger's state or its clock is left to it: whether a ship, expiry or expected
date lies in the past or too far ahead (a replay of an old request is answered as the first
time, whatever its dates say today), and everything about the ids' existence. The exception
is the common Reserve, plain (valid whatever the day: no dates, no substitutes): it goes
vetted, with its request digest (commands.VettedReserve), and the writer, whose core caps
the rate of writes, does neither again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atp.ledger import commands, validation


def _reservation_call(command: Any) -> None:
    validation.check_reservation_call(command.reservation_id, command.request_id,
                                      getattr(command, "lines", ()), command.expected_version)


def _vetted_reserve(command: commands.Reserve) -> commands.Command:
    if validation.is_plain_reserve(command):
        return commands.VettedReserve(command, commands.digest(command))
    validation.check_reserve_fields(command, None)
    return command


_PRECHECKS: dict[type, Callable[[Any], object]] = {
    commands.Commit: _reservation_call,
    commands.Release: _reservation_call,
    commands.Fulfill: _reservation_call,
    commands.Extend: validation.check_extend,
    commands.RecordDelivery: validation.check_record_delivery,
    commands.UpsertNode: validation.check_node,
    commands.UpsertSupply: lambda command: validation.check_supply(command, None),
    commands.ReceiveSupply: validation.check_receive,
    commands.PlaceHold: lambda command: validation.check_hold(command, None),
    commands.ReleaseHold: validation.check_release_hold,
}


def precheck(command: commands.Command) -> commands.Command:
    """Raises InvalidArgument, naming every bad field, for what the command's own fields
    show to be wrong; commands without such checks pass. Returns the command to send the
    writer: this one, or a plain Reserve vetted (what the checks return is not sent)."""
    if isinstance(command, commands.Reserve):
        return _vetted_reserve(command)
    check = _PRECHECKS.get(type(command))
    if check is not None:
        check(command)
    return command
