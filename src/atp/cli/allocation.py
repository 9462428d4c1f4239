"""Allocation policies: who gets scarce stock first (policy set, get, list, clear, explain)."""

from __future__ import annotations

import argparse

from atp.cli.outcome import CommandTree, Outcome
from atp.cli.views import date_text, format_table
from atp.client import Client
from atp.v1 import allocation_pb2

_CRITERION = allocation_pb2.AllocationPolicy.Criterion
_SOURCE = allocation_pb2.AllocationPolicy.Source
CRITERIA = tuple(name for name in _CRITERION.keys() if _CRITERION.Value(name))  # noqa: SIM118


def add_policy_commands(tree: CommandTree) -> None:
    policy = tree.group("policy", "allocation policies: the order scarce stock is served in")
    set_command = policy.command(
        "set", "set the allocation policy of a SKU, or of a SKU at one node", _set)
    _add_scope_arguments(set_command)
    set_command.add_argument(
        "--criteria", required=True, type=criteria_list, metavar="CRITERIA",
        help="comma separated, first decides first: " + ", ".join(c.lower() for c in CRITERIA)
        + " (ties: reservation and line ids); '' removes the policy")
    set_command.add_argument(
        "--channel-ranks", default=[], type=name_list, metavar="CHANNELS",
        help="for channel_rank: channels in the order they are served, comma separated")

    clear = policy.command(
        "clear", "remove the policy of a SKU (or a SKU at a node): the next one applies", _clear)
    _add_scope_arguments(clear)

    get = policy.command(
        "get", "the policy in force for a SKU (at a node), and where it comes from; no "
        "--sku: the server default", _get)
    get.add_argument("--sku", default="")
    get.add_argument("--node", dest="node_id", default="")

    policy.command("list", "every SKU and node policy set", _list)

    explain = policy.command(
        "explain", "a position's open demand in policy order: what fits, what is at risk, "
        "and which criterion placed each line", _explain)
    explain.add_argument("--sku", required=True)
    explain.add_argument("--node", dest="node_id", required=True)


def _add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sku", required=True)
    parser.add_argument("--node", dest="node_id", default="",
                        help="one node (default: every node of the SKU)")


def criteria_list(text: str) -> list[str]:
    """Criterion names, comma separated, any case; '' is none."""
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in CRITERIA:
            raise argparse.ArgumentTypeError(
                f"{name.lower()!r} is not a criterion; one of "
                + ", ".join(c.lower() for c in CRITERIA))
    return names


def name_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _set(client: Client, arguments: argparse.Namespace) -> Outcome:
    policy = client.set_allocation_policy(
        arguments.sku, arguments.criteria, node_id=arguments.node_id,
        channel_ranks=arguments.channel_ranks)
    return Outcome(policy, policy_text(policy))


def _clear(client: Client, arguments: argparse.Namespace) -> Outcome:
    policy = client.set_allocation_policy(arguments.sku, [], node_id=arguments.node_id)
    return Outcome(policy, policy_text(policy))


def _get(client: Client, arguments: argparse.Namespace) -> Outcome:
    policy = client.get_allocation_policy(arguments.sku, arguments.node_id)
    return Outcome(policy, policy_text(policy))


def _list(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.list_allocation_policies()
    return Outcome(response, format_table(
        ("SKU", "NODE", "CRITERIA", "CHANNEL RANKS"),
        ((p.sku, p.node_id or "(every node)", criteria_text(p), ",".join(p.channel_ranks))
         for p in response.policies)))


def _explain(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.explain_allocation(arguments.sku, arguments.node_id)
    table = format_table(
        ("RANK", "RESERVATION", "LINE", "QTY", "AT RISK", "PRIORITY", "CHANNEL", "VALUE", "DUE",
         "DECIDED BY", "WHY"),
        ((line.rank, line.reservation_id, line.line_id, line.quantity, line.at_risk,
          line.priority, line.channel, line.unit_value, date_text(line.due_date),
          line.decided_by, line.detail) for line in response.lines))
    return Outcome(response, policy_text(response.policy) + "\n" + table)


def criteria_text(policy: allocation_pb2.AllocationPolicy) -> str:
    return ",".join(_CRITERION.Name(number).lower() for number in policy.criteria)


def policy_text(policy: allocation_pb2.AllocationPolicy) -> str:
    """One line: the scope, its criteria (and channel ranks), where the policy comes from."""
    scope = "server default" if not policy.sku else (
        f"{policy.sku} at {policy.node_id}" if policy.node_id else f"{policy.sku}")
    ranks = f" (channels: {','.join(policy.channel_ranks)})" if policy.channel_ranks else ""
    source = _SOURCE.Name(policy.source).lower().replace("_", " ")
    return f"{scope}: {criteria_text(policy)}, then ids{ranks} [{source}]"
