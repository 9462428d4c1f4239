"""Start-up flags: typed validators usable as argparse `type=` functions, and a parser whose
defaults come from ATP_* environment variables and go through the same validators.

Every validator takes the flag's text and returns the typed value, or raises InvalidValue
(an argparse.ArgumentTypeError, so argparse reports it against the flag) whose message quotes
the value and says what is allowed.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Self, TypeVar

T = TypeVar("T")

PORT_MAX = 65535
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DURATION_UNITS_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_HINT = "seconds (900, 1.5) or a number with a unit ms, s, m, h or d (500ms, 15m, 7d)"

_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>[a-zA-Z]*)")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# A DNS name or an IPv4 address; IPv6 addresses are checked by the ipaddress module.
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class InvalidValue(argparse.ArgumentTypeError, ValueError):
    """A flag value that is refused; a ValueError too, for callers outside argparse."""


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `15m`, `24h`, `7d`, `500ms` or plain seconds (`900`, `1.5`).

    Refuses empty text, negatives, unknown units, nan and infinity.
    """
    return _parse_duration(text, DURATION_HINT)


def _parse_duration(text: str, allowed: str) -> float:
    """parse_duration, whose errors end with `allowed`: what the flag at hand accepts."""
    stripped = text.strip()
    if stripped.startswith("-"):
        raise InvalidValue(f"{text!r} is negative; expected {allowed}")
    match = _DURATION.fullmatch(stripped)
    if match is None:
        raise InvalidValue(f"{text!r} is not a duration; expected {allowed}")
    unit = match.group("unit") or "s"
    if unit not in DURATION_UNITS_SECONDS:
        raise InvalidValue(f"{text!r} has an unknown unit {unit!r}; expected {allowed}")
    seconds = float(match.group("number")) * DURATION_UNITS_SECONDS[unit]
    if not math.isfinite(seconds):
        raise InvalidValue(f"{text!r} is too long; expected {allowed}")
    return seconds


def whole_seconds_in_range(minimum: int, maximum: int) -> Callable[[str], int]:
    """A duration (see parse_duration) of whole seconds from minimum to maximum."""
    allowed = (
        f"whole seconds from {_spoken(minimum)} to {_spoken(maximum)}: 900, or with a unit "
        "s, m, h or d (15m, 24h)"
    )

    def whole_seconds(text: str) -> int:
        seconds = _parse_duration(text, allowed)
        if seconds != int(seconds):
            raise InvalidValue(f"{text!r} is not a whole number of seconds; expected {allowed}")
        if not minimum <= seconds <= maximum:
            raise InvalidValue(f"{text!r} is out of range; expected {allowed}")
        return int(seconds)

    return whole_seconds


def _spoken(seconds: int) -> str:
    """1 -> '1s', 604800 -> '7d': the largest unit that divides the seconds evenly."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % DURATION_UNITS_SECONDS[unit] == 0:
            return f"{seconds // int(DURATION_UNITS_SECONDS[unit])}{unit}"
    return f"{seconds}s"


def int_in_range(
    minimum: int, maximum: int | None = None, what: str = "a whole number",
) -> Callable[[str], int]:
    """A whole number from minimum to maximum (no upper bound when maximum is None); `what`
    names it in errors."""
    allowed = (
        f"{what} of at least {minimum}" if maximum is None
        else f"{what} from {minimum} to {maximum}"
    )

    def whole_number(text: str) -> int:
        if _INTEGER.fullmatch(text.strip()) is None:
            raise InvalidValue(f"{text!r} is not a whole number; expected {allowed}")
        try:
            number = int(text)
        except ValueError:  # more digits than int() takes: out of any useful range
            raise InvalidValue(f"{text!r} is out of range; expected {allowed}") from None
        if number < minimum or (maximum is not None and number > maximum):
            raise InvalidValue(f"{text!r} is out of range; expected {allowed}")
        return number

    return whole_number


positive_int = int_in_range(1)
non_negative_int = int_in_range(0)
port = int_in_range(0, PORT_MAX, what="a port")


def host(text: str) -> str:
    """A host name, IPv4 address or IPv6 address (with or without brackets), without brackets."""
    bracketed = text.startswith("[") and text.endswith("]")
    bare = text[1:-1] if bracketed else text
    if ":" in bare or bracketed:
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            raise InvalidValue(f"{text!r} is not an IPv6 address") from None
    if _HOST_NAME.fullmatch(bare) is None:
        raise InvalidValue(
            f"{text!r} is not a host; expected a name or address such as 127.0.0.1 or ::1"
        )
    return bare


def host_port(text: str) -> str:
    """HOST:PORT with a port from 0 (any free one) to 65535; IPv6 as [::1]:50051.

    Returned in a canonical form: the port without sign or leading zeros, IPv6 compressed.
    """
    host_text, separator, port_text = text.rpartition(":")
    bracketed = host_text.startswith("[") and host_text.endswith("]")
    if not separator or not host_text or (":" in host_text and not bracketed):
        raise InvalidValue(
            f"{text!r} is not HOST:PORT; expected e.g. 127.0.0.1:50051 or [::1]:50051"
        )
    try:
        return join_host_port(host(host_text), port(port_text))
    except InvalidValue as error:
        raise InvalidValue(f"{text!r}: {error}") from None


def optional_host_port(text: str) -> str:
    """host_port, or "" for none (a flag that is off by default)."""
    return host_port(text) if text.strip() else ""


def join_host_port(host_text: str, port_number: int) -> str:
    """The HOST:PORT form of a host (as `host` returns it) and a port: IPv6 in brackets."""
    return f"[{host_text}]:{port_number}" if ":" in host_text else f"{host_text}:{port_number}"


def log_level(text: str) -> str:
    """A logging level name, in any case; returned in upper case."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise InvalidValue(f"{text!r} is not a log level; expected one of {', '.join(LOG_LEVELS)}")
    return level


def on_or_off(text: str) -> str:
    """'on' or 'off', in any case; returned in lower case."""
    switch = text.strip().lower()
    if switch not in ("on", "off"):
        raise InvalidValue(f"{text!r} is neither on nor off")
    return switch


def switch(text: str) -> bool:
    """A yes/no value from the environment: on/off, true/false, yes/no, 1/0 (any case)."""
    value = text.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0", ""):
        return False
    raise InvalidValue(f"{text!r} is not a switch; expected on/off, true/false, yes/no or 1/0")


def optional_path(text: str) -> str:
    """A file path, or "" for none."""
    return text.strip() and text


def directory_path(text: str) -> str:
    """A path, which must not be empty (an empty ATP_* variable would mean the current one)."""
    if not text.strip():
        raise InvalidValue(f"{text!r} is an empty path; expected a directory")
    return text


class EnvironmentValue(str):
    """A flag's default read from an environment variable, which errors then name."""

    variable: str

    def __new__(cls, text: str, variable: str) -> Self:
        value = super().__new__(cls, text)
        value.variable = variable
        return value


class EnvironmentValueError(Exception):
    """An environment variable's value that its flag's validator refuses.

    Deliberately no ArgumentTypeError: argparse would report it against the flag only.
    """


def naming_the_variable(validator: Callable[[str], T]) -> Callable[[str], T]:
    """The validator, except that a refused value from the environment names its variable."""

    def validate(text: str) -> T:
        try:
            return validator(text)
        except argparse.ArgumentTypeError as error:
            if isinstance(text, EnvironmentValue):
                shown = text if text.isprintable() else repr(str(text))
                raise EnvironmentValueError(f"{text.variable}={shown}: {error}") from None
            raise

    validate.__name__ = getattr(validator, "__name__", "value")
    return validate


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser for flags with ATP_* defaults whose errors are one line and exit 2."""

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ = os.environ if environ is None else environ
        self._environment_checks: list[Callable[[], object]] = []

    def add_flag(
        self, flag: str, variable: str, validator: Callable[[str], Any], default: str, help: str,
        metavar: str | None = None,
    ) -> None:
        """A flag whose default is the variable's value, else `default`; both validated."""
        checked = naming_the_variable(validator)
        text = self.environ.get(variable)
        value = None if text is None else EnvironmentValue(text, variable)
        if value is not None:
            self._environment_checks.append(lambda: checked(value))
        self.add_argument(
            flag,
            type=checked,
            # A str default: argparse passes it through `type` when the flag is not given.
            default=default if value is None else value,
            metavar=metavar,
            help=f"{help} ({variable}; default {default})",
        )

    def add_switch(self, flag: str, variable: str, help: str) -> None:
        """A flag that takes no value (off unless given); the variable may turn it on."""
        text = self.environ.get(variable)
        value = False
        if text is not None:
            checked = naming_the_variable(switch)
            self._environment_checks.append(
                lambda: checked(EnvironmentValue(text, variable)))
            try:
                value = switch(text)
            except InvalidValue:
                value = False  # reported by the environment check
        self.add_argument(flag, action="store_true", default=value,
                          help=f"{help} ({variable}=1; default off)")

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; same behaviour
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        try:
            parsed = super().parse_known_args(args, namespace)
            # Also the variables whose flag was given: a bad value left in the environment is
            # a mistake to report now, not on the day the flag is dropped.
            for check in self._environment_checks:
                check()
        except EnvironmentValueError as error:
            self.error(str(error))
        return parsed

    def error(self, message: str) -> NoReturn:
        # One line, no usage: the message names the flag or variable and what it allows.
        one_line = " ".join(message.splitlines())
        self.exit(2, f"{self.prog}: {one_line}\n")
