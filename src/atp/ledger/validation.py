"""Checks of a command's shape against limits.py: each problem becomes one field violation."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Protocol

from atp import limits
from atp.ledger import commands
from atp.ledger.errors import FieldViolation, InvalidArgument
from atp.ledger.model import Day, Policy


class Violations:
    """Collects field violations and raises them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)

    def identifier(self, field_path: str, value: str, *, required: bool = True) -> None:
        if not value:
            if required:
                self.add(field_path, "required")
            return
        if _is_plain_id(value):
            return  # the common case, without encoding
        problem = id_problem(value)
        if problem:
            self.add(field_path, problem)

    def text(self, field_path: str, value: str) -> None:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limits.reason_bytes_max:
            self.add(field_path, f"{size} bytes; at most {limits.reason_bytes_max}")

    def quantity(self, field_path: str, value: int, *, allow_zero: bool = False) -> None:
        lowest = 0 if allow_zero else 1
        if value < lowest:
            self.add(field_path, f"must be at least {lowest}, got {value}")
        elif value > limits.quantity_max:
            self.add(field_path, f"must be at most {limits.quantity_max}, got {value}")

    def count(self, field_path: str, size: int, most: int, *, least: int = 1) -> bool:
        """Checks a repeated field's length; False when it is out of range."""
        if size < least:
            self.add(field_path, f"at least {least} required")
            return False
        if size > most:
            self.add(field_path, f"{size} items; at most {most}")
            return False
        return True

    def days(self, field_path: str, value: int) -> None:
        if not 0 <= value <= limits.days_max:
            self.add(field_path, f"must be 0..{limits.days_max}, got {value}")

    def date(self, field_path: str, value: commands.Date | None, *, required: bool) -> Day | None:
        """The date as a day ordinal, or None (recording a violation when it is invalid)."""
        if value is None or value == (0, 0, 0):
            if required:
                self.add(field_path, "required")
            return None
        try:
            return datetime.date(*value).toordinal()
        except (ValueError, OverflowError):  # OverflowError: a part beyond a C int
            self.add(
                field_path, f"not a calendar date: {value[0]:04d}-{value[1]:02d}-{value[2]:02d}"
            )
            return None

    def unique(self, collection: str, field_name: str, values: list[str]) -> None:
        """Each repeat of a value names its own element: lines[2].line_id."""
        seen: set[str] = set()
        for index, value in enumerate(values):
            if value in seen:
                self.add(f"{collection}[{index}].{field_name}", f"duplicate {value!r}")
            seen.add(value)


def check_node(command: commands.UpsertNode) -> None:
    v = Violations()
    v.identifier("node.node_id", command.node_id)
    kind = command.kind
    if kind and not (
        len(kind) <= limits.node_kind_chars_max
        and kind.replace("_", "").isalnum()
        and kind.isascii()
    ):
        v.add("node.kind", f"1..{limits.node_kind_chars_max} characters of A-Z, 0-9 and _")
    v.identifier("node.region", command.region, required=False)
    v.days("node.handling_days", command.handling_days)
    if v.count("node.lanes", len(command.lanes), limits.lines_max, least=0):
        for index, lane in enumerate(command.lanes):
            v.identifier(f"node.lanes[{index}].region", lane.region)
            v.days(f"node.lanes[{index}].transit_days", lane.transit_days)
            if not 0 <= lane.cost <= limits.quantity_max:
                v.add(f"node.lanes[{index}].cost", f"must be 0..{limits.quantity_max}")
        v.unique("node.lanes", "region", [lane.region for lane in command.lanes])
    v.raise_if_any()


def check_adjust_stock(command: commands.AdjustStock, movement_types: frozenset[str]) -> None:
    v = Violations()
    v.identifier("request_id", command.request_id)
    if v.count("movements", len(command.movements), limits.lines_max):
        for index, movement in enumerate(command.movements):
            _check_movement(v, f"movements[{index}]", movement, movement_types)
    v.raise_if_any()


def _check_movement(
    v: Violations, path: str, movement: commands.Movement, types: frozenset[str]
) -> None:
    v.identifier(f"{path}.sku", movement.sku)
    v.identifier(f"{path}.node_id", movement.node_id)
    v.text(f"{path}.reason", movement.reason)
    if movement.type not in types:
        v.add(f"{path}.type", f"must be one of {', '.join(sorted(types))}")
        return
    v.quantity(f"{path}.quantity", movement.quantity, allow_zero=movement.type == "CYCLE_COUNT")
    if movement.type == "TRANSFER":
        v.identifier(f"{path}.to_node_id", movement.to_node_id)
        if movement.to_node_id == movement.node_id:
            v.add(f"{path}.to_node_id", "must differ from node_id")
    elif movement.to_node_id:
        v.add(f"{path}.to_node_id", "only for TRANSFER")


def check_safety_stock(command: commands.SetSafetyStock) -> None:
    v = Violations()
    v.identifier("sku", command.sku)
    v.identifier("node_id", command.node_id)
    v.quantity("quantity", command.quantity, allow_zero=True)
    v.raise_if_any()


def check_supply(command: commands.UpsertSupply, today: Day | None) -> Day:
    """UpsertSupply's checks; with today None, all but the date's distance from today."""
    v = Violations()
    v.identifier("supply.supply_id", command.supply_id)
    v.identifier("supply.sku", command.sku, required=False)
    v.identifier("supply.node_id", command.node_id, required=False)
    v.quantity("supply.quantity", command.quantity, allow_zero=True)
    day = v.date("supply.expected_date", command.expected_date, required=True)
    if day is not None and today is not None and day > today + limits.horizon_days_max:
        v.add("supply.expected_date", f"more than {limits.horizon_days_max} days ahead")
    v.raise_if_any()
    assert day is not None
    return day


def check_receive(command: commands.ReceiveSupply) -> None:
    v = Violations()
    v.identifier("request_id", command.request_id)
    v.identifier("supply_id", command.supply_id)
    v.quantity("quantity", command.quantity)
    v.raise_if_any()


def check_hold(command: commands.PlaceHold, now: float | None) -> None:
    """PlaceHold's checks; with now None, all but expire_time's being in the future."""
    v = Violations()
    v.identifier("hold.hold_id", command.hold_id)
    v.identifier("hold.sku", command.sku)
    v.identifier("hold.node_id", command.node_id)
    v.quantity("hold.quantity", command.quantity)
    v.text("hold.reason", command.reason)
    if command.expire_time is not None and now is not None and command.expire_time <= now:
        v.add("hold.expire_time", "must be in the future")
    v.raise_if_any()


def check_release_hold(command: commands.ReleaseHold) -> None:
    v = Violations()
    v.identifier("hold_id", command.hold_id)
    v.raise_if_any()


def check_reserve(command: commands.Reserve, today: Day | None) -> list[Day | None]:
    """Validates a Reserve and returns each line's requested ship day (None: earliest).
    With today None, all but the ship dates' distance from today."""
    if is_plain_reserve(command):
        return [None] * len(command.lines)
    return check_reserve_fields(command, today)


def check_reserve_fields(command: commands.Reserve, today: Day | None) -> list[Day | None]:
    """check_reserve field by field, naming every violation."""
    v = Violations()
    v.identifier("reservation_id", command.reservation_id)
    v.identifier("destination_region", command.destination_region, required=False)
    v.identifier("channel", command.channel, required=False)
    v.identifier("customer_id", command.customer_id, required=False)
    if not 0 <= command.ttl_seconds <= limits.ttl_seconds_max:
        v.add("ttl_seconds", f"must be 0..{limits.ttl_seconds_max}, got {command.ttl_seconds}")
    if command.policy.max_nodes < 0:
        v.add("policy.max_nodes", "must be 0 (no limit) or more")
    ship_days: list[Day | None] = []
    if v.count("lines", len(command.lines), limits.lines_max):
        for index, line in enumerate(command.lines):
            ship_days.append(_check_line(v, f"lines[{index}]", line, today))
        v.unique("lines", "line_id", [line.line_id for line in command.lines])
    v.raise_if_any()
    return ship_days


def is_plain_reserve(command: commands.Reserve) -> bool:
    """True only if check_reserve would find nothing wrong and no line names a ship date:
    the common case, checked without building a field path per line. Anything else (or
    anything unsure) goes through the full check, which names every violation.

    In one pass, with one text test for all the ids together: printable ASCII without any
    space (stricter than an id needs: ids with spaces inside take the full check), so that
    lengths in characters are lengths in bytes."""
    lines = command.lines
    most = limits.id_bytes_max
    if not (
        0 < len(command.reservation_id) <= most
        and len(command.destination_region) <= most
        and len(command.channel) <= most
        and len(command.customer_id) <= most
        and 0 <= command.ttl_seconds <= limits.ttl_seconds_max
        and command.policy.max_nodes >= 0
        and 1 <= len(lines) <= limits.lines_max
    ):
        return False
    ids = [command.reservation_id, command.destination_region, command.channel,
           command.customer_id]
    quantity_max = limits.quantity_max
    for line_id, sku, quantity, node_id, ship_date, unit_value, substitutes, need_by in lines:
        if not (
            ship_date is None
            and not substitutes
            and need_by is None
            and 0 <= unit_value <= quantity_max
            and 0 < len(line_id) <= most
            and 0 < len(sku) <= most
            and len(node_id) <= most
            and 1 <= quantity <= quantity_max
        ):
            return False
        ids += (line_id, sku, node_id)
    text = "".join(ids)
    return (
        text.isascii() and text.isprintable() and " " not in text
        and len({line.line_id for line in lines}) == len(lines)
    )


def _is_plain_line(line_id: str, sku: str, node_id: str, quantity: int) -> bool:
    """A line's ids (node_id optional) and quantity pass their checks, in their common form."""
    most = limits.id_bytes_max
    ids = line_id + sku + node_id  # one ASCII/printable/no-space test for all three
    return (
        0 < len(line_id) <= most
        and 0 < len(sku) <= most
        and len(node_id) <= most
        and ids.isascii()
        and ids.isprintable()
        and " " not in ids  # ids with spaces inside (valid) take the full check
        and 1 <= quantity <= limits.quantity_max
    )


class _OrderedLine(Protocol):
    """What validation reads of a requested line (a Reserve's or a Promise's)."""

    @property
    def line_id(self) -> str: ...

    @property
    def sku(self) -> str: ...

    @property
    def quantity(self) -> int: ...


class _PromisedLine(_OrderedLine, Protocol):
    """A Promise's line: an _OrderedLine that may list substitutes and a need-by date."""

    @property
    def substitute_skus(self) -> tuple[str, ...]: ...

    @property
    def need_by_date(self) -> tuple[int, int, int] | None: ...


def _are_distinct_lines(lines: Sequence[_OrderedLine]) -> bool:
    """1..lines_max lines with distinct line ids."""
    return (
        1 <= len(lines) <= limits.lines_max
        and len({line.line_id for line in lines}) == len(lines)
    )


def _is_plain_id(value: str) -> bool:
    """A valid identifier in its common form (the fast path of Violations.identifier): printable
    ASCII, whose only whitespace is the space, which may not begin or end it."""
    return (
        0 < len(value) <= limits.id_bytes_max
        and value.isascii()
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
    )


def id_problem(value: str) -> str:
    """What is wrong with a non-empty identifier, or "" (the full check behind _is_plain_id).

    An id is at most id_bytes_max bytes of UTF-8, of printable characters only (no control,
    format or separator characters but the space), not blank and without whitespace at
    either end: "A1" and "A1 " would be two ids that print the same."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limits.id_bytes_max:
        return f"{size} bytes; at most {limits.id_bytes_max}"
    if value.isspace():
        return "must not be blank (whitespace only)"
    if not value.isprintable():
        return "must contain printable characters only"
    if value[0].isspace() or value[-1].isspace():
        return "must not begin or end with whitespace"
    return ""


def _check_line(
    v: Violations, path: str, line: commands.LineRequest, today: Day | None
) -> Day | None:
    v.identifier(f"{path}.line_id", line.line_id)
    v.identifier(f"{path}.sku", line.sku)
    v.identifier(f"{path}.node_id", line.node_id, required=False)
    v.quantity(f"{path}.quantity", line.quantity)
    if not 0 <= line.unit_value <= limits.quantity_max:
        v.add(f"{path}.unit_value", f"must be 0..{limits.quantity_max}, got {line.unit_value}")
    _check_substitutes(v, path, line.sku, line.substitute_skus)
    v.date(f"{path}.need_by_date", line.need_by_date, required=False)
    day = v.date(f"{path}.ship_date", line.ship_date, required=False)
    if day is None or today is None:
        return day
    if day < today:
        v.add(f"{path}.ship_date", "is in the past")
    elif day > today + limits.horizon_days_max:
        v.add(f"{path}.ship_date", f"more than {limits.horizon_days_max} days ahead")
    return day


def _check_substitutes(v: Violations, path: str, sku: str, substitutes: Sequence[str]) -> None:
    """Substitute SKUs: <= substitutes_max ids, unique, none the line's own SKU."""
    if not v.count(f"{path}.substitute_skus", len(substitutes), limits.substitutes_max,
                   least=0):
        return
    for index, substitute in enumerate(substitutes):
        v.identifier(f"{path}.substitute_skus[{index}]", substitute)
        if substitute == sku:
            v.add(f"{path}.substitute_skus[{index}]", "is the line's own sku")
        elif substitute in substitutes[:index]:
            v.add(f"{path}.substitute_skus[{index}]", f"duplicate {substitute!r}")


def check_reservation_call(
    reservation_id: str, request_id: str, lines: tuple[commands.LineQuantity, ...],
    expected_version: int = 0,
) -> None:
    v = Violations()
    v.identifier("reservation_id", reservation_id)
    v.identifier("request_id", request_id)
    _check_expected_version(v, expected_version)
    if v.count("lines", len(lines), limits.lines_max, least=0):
        for index, line in enumerate(lines):
            v.identifier(f"lines[{index}].line_id", line.line_id)
            v.quantity(f"lines[{index}].quantity", line.quantity)
        v.unique("lines", "line_id", [line.line_id for line in lines])
    v.raise_if_any()


def check_extend(command: commands.Extend) -> None:
    v = Violations()
    v.identifier("reservation_id", command.reservation_id)
    v.identifier("request_id", command.request_id)
    _check_expected_version(v, command.expected_version)
    if not 0 <= command.ttl_seconds <= limits.ttl_seconds_max:
        v.add("ttl_seconds", f"must be 0..{limits.ttl_seconds_max}, got {command.ttl_seconds}")
    v.raise_if_any()


def _check_expected_version(v: Violations, expected_version: int) -> None:
    if expected_version < 0:
        v.add("expected_version", f"must be 0 (no check) or a version, got {expected_version}")


def check_promise(lines: Sequence[_PromisedLine], region: str, policy: Policy) -> None:
    if _is_plain_promise(lines, region, policy):
        return
    check_promise_fields(lines, region, policy)


def _is_plain_promise(lines: Sequence[_PromisedLine], region: str, policy: Policy) -> bool:
    """True only if check_promise_fields would find nothing wrong (as is_plain_reserve)."""
    if not (_is_plain_id(region) and policy.max_nodes >= 0):
        return False
    for line in lines:
        if not _is_plain_line(line.line_id, line.sku, "", line.quantity):
            return False
        if line.substitute_skus or line.need_by_date is not None:
            return False  # rare: the full check names what is wrong with them
    return _are_distinct_lines(lines)


def check_promise_fields(lines: Sequence[_PromisedLine], region: str, policy: Policy) -> None:
    """check_promise field by field, naming every violation."""
    v = Violations()
    v.identifier("destination_region", region)
    if policy.max_nodes < 0:
        v.add("policy.max_nodes", "must be 0 (no limit) or more")
    if v.count("lines", len(lines), limits.lines_max):
        for index, line in enumerate(lines):
            v.identifier(f"lines[{index}].line_id", line.line_id)
            v.identifier(f"lines[{index}].sku", line.sku)
            v.quantity(f"lines[{index}].quantity", line.quantity)
            _check_substitutes(v, f"lines[{index}]", line.sku, line.substitute_skus)
            v.date(f"lines[{index}].need_by_date", line.need_by_date, required=False)
        v.unique("lines", "line_id", [line.line_id for line in lines])
    v.raise_if_any()


def check_scope(node_id: str, sku: str, reservation_ids: tuple[str, ...]) -> None:
    """A reallocation's scope: optional node and SKU, and up to lines_max reservation ids."""
    violations = Violations()
    violations.identifier("node_id", node_id, required=False)
    violations.identifier("sku", sku, required=False)
    if violations.count("reservation_ids", len(reservation_ids), limits.lines_max, least=0):
        for index, reservation_id in enumerate(reservation_ids):
            violations.identifier(f"reservation_ids[{index}]", reservation_id)
    violations.raise_if_any()


def check_record_delivery(command: commands.RecordDelivery) -> Day:
    """RecordDelivery's shape; returns the delivered day. That day against the reservation's
    creation and today is the handler's to check (it needs the reservation)."""
    v = Violations()
    v.identifier("reservation_id", command.reservation_id)
    v.identifier("request_id", command.request_id)
    day = v.date("delivery.delivered_date", command.delivered_date, required=True)
    v.quantity("delivery.units_delivered", command.units_delivered, allow_zero=True)
    if command.damaged_units < 0:
        v.add("delivery.damaged_units", f"must be at least 0, got {command.damaged_units}")
    elif command.damaged_units > max(command.units_delivered, 0):
        v.add("delivery.damaged_units", f"must be at most units_delivered "
              f"({command.units_delivered}), got {command.damaged_units}")
    v.raise_if_any()
    assert day is not None  # required: a missing or invalid date is a violation above
    return day
