"""atp.flags validators and atpd's flag parsing, in process."""

from __future__ import annotations

import argparse
import math

import pytest

from atp import flags, limits
from atp.daemon import config_from, parse_args

# --- parse_duration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("900", 900.0), ("1.5", 1.5), ("0", 0.0), (".5", 0.5), ("30s", 30.0), ("15m", 900.0),
        ("24h", 86400.0), ("7d", 604800.0), ("500ms", 0.5), ("1.5h", 5400.0), (" 15m ", 900.0),
    ],
)
def test_parse_duration_reads_plain_seconds_and_units(text: str, seconds: float) -> None:
    assert flags.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not a duration"), ("  ", "not a duration"), ("-5", "negative"),
        ("-1m", "negative"), ("15x", "unknown unit 'x'"), ("15M", "unknown unit 'M'"),
        ("nan", "not a duration"), ("inf", "not a duration"), ("1e3", "not a duration"),
        ("15 m", "not a duration"), ("m", "not a duration"), ("9" * 400, "too long"),
        ("1,5", "not a duration"), ("+5", "not a duration"),
    ],
)
def test_parse_duration_refuses_what_is_no_duration(text: str, problem: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=problem) as refused:
        flags.parse_duration(text)
    assert repr(text) in str(refused.value)
    assert isinstance(refused.value, ValueError), "callers outside argparse catch ValueError"


def test_parse_duration_always_returns_a_finite_float() -> None:
    seconds = flags.parse_duration("7d")
    assert isinstance(seconds, float) and math.isfinite(seconds)


# --- whole seconds in a range (--default-ttl) -----------------------------------------------

ttl = flags.whole_seconds_in_range(1, limits.ttl_seconds_max)


@pytest.mark.parametrize(("text", "seconds"), [("1", 1), ("900", 900), ("15m", 900), ("7d", 604800)])
def test_whole_seconds_accepts_durations_in_range(text: str, seconds: int) -> None:
    assert ttl(text) == seconds
    assert isinstance(ttl(text), int)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("0", "out of range"), ("-5", "negative"), ("1000000000", "out of range"),
     ("8d", "out of range"), ("1.5", "not a whole number of seconds"),
     ("500ms", "not a whole number of seconds"), ("abc", "not a duration")],
)
def test_whole_seconds_refuses_values_outside_the_range(text: str, problem: str) -> None:
    with pytest.raises(flags.InvalidValue, match=problem) as refused:
        ttl(text)
    assert "from 1s to 7d" in str(refused.value)


# --- whole numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "number"), [("1", 1), ("8192", 8192), ("+3", 3), (" 7 ", 7)])
def test_positive_int_accepts_whole_numbers_from_1(text: str, number: int) -> None:
    assert flags.positive_int(text) == number


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "", "abc", "1e3", "١٢"])
def test_positive_int_refuses_the_rest(text: str) -> None:
    with pytest.raises(flags.InvalidValue, match="at least 1"):
        flags.positive_int(text)


def test_non_negative_int_accepts_0_and_refuses_negatives() -> None:
    assert flags.non_negative_int("0") == 0
    assert flags.non_negative_int("10") == 10
    with pytest.raises(flags.InvalidValue, match="'-1' is out of range; .*at least 0"):
        flags.non_negative_int("-1")


def test_int_in_range_refuses_both_ends_and_huge_numbers() -> None:
    percent = flags.int_in_range(0, 100, what="a percentage")
    assert percent("0") == 0 and percent("100") == 100
    for text in ("-1", "101", "9" * 5000):
        with pytest.raises(flags.InvalidValue, match="expected a percentage from 0 to 100"):
            percent(text)


@pytest.mark.parametrize(("text", "number"), [("0", 0), ("9100", 9100), ("65535", 65535)])
def test_port_accepts_0_to_65535(text: str, number: int) -> None:
    assert flags.port(text) == number


@pytest.mark.parametrize("text", ["-1", "65536", "99999", "http"])
def test_port_refuses_the_rest(text: str) -> None:
    with pytest.raises(flags.InvalidValue, match="expected a port from 0 to 65535"):
        flags.port(text)


# --- hosts and addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"), ("0.0.0.0:0", "0.0.0.0:0"),
        ("localhost:9", "localhost:9"), ("[::1]:50051", "[::1]:50051"),
        ("[0:0::1]:050051", "[::1]:50051"), ("db-1.example.com:65535", "db-1.example.com:65535"),
    ],
)
def test_host_port_accepts_and_canonicalises_addresses(text: str, canonical: str) -> None:
    assert flags.host_port(text) == canonical


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("127.0.0.1:99999", "out of range"), ("127.0.0.1:-1", "out of range"),
        ("127.0.0.1", "not HOST:PORT"), (":50051", "not HOST:PORT"),
        ("::1:50051", "not HOST:PORT"), ("[zz]:5", "not an IPv6 address"),
        ("bad host:5", "not a host"), ("127.0.0.1:", "not a whole number"),
        ("127.0.0.1:port", "not a whole number"),
    ],
)
def test_host_port_refuses_the_rest(text: str, problem: str) -> None:
    with pytest.raises(flags.InvalidValue, match=problem) as refused:
        flags.host_port(text)
    assert str(refused.value).startswith(repr(text))


@pytest.mark.parametrize(
    ("text", "bare"),
    [("127.0.0.1", "127.0.0.1"), ("localhost", "localhost"), ("::1", "::1"),
     ("[::1]", "::1"), ("0:0::1", "::1")],
)
def test_host_accepts_names_and_addresses_without_brackets(text: str, bare: str) -> None:
    assert flags.host(text) == bare


@pytest.mark.parametrize("text", ["", "not a host", "host_name", "[127.0.0.1]", "::zz", "-a"])
def test_host_refuses_the_rest(text: str) -> None:
    with pytest.raises(flags.InvalidValue):
        flags.host(text)


def test_join_host_port_brackets_ipv6_only() -> None:
    assert flags.join_host_port("127.0.0.1", 9100) == "127.0.0.1:9100"
    assert flags.join_host_port("::1", 9100) == "[::1]:9100"


# --- words -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["DEBUG", "info", "Warning", "error", "CRITICAL"])
def test_log_level_accepts_levels_in_any_case(text: str) -> None:
    assert flags.log_level(text) == text.upper()


@pytest.mark.parametrize("text", ["BOGUS", "", "WARN", "10"])
def test_log_level_refuses_the_rest(text: str) -> None:
    with pytest.raises(flags.InvalidValue, match="DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        flags.log_level(text)


def test_on_or_off() -> None:
    assert flags.on_or_off("ON") == "on"
    assert flags.on_or_off("off") == "off"
    with pytest.raises(flags.InvalidValue, match="neither on nor off"):
        flags.on_or_off("yes")


def test_directory_path_refuses_only_empty_paths() -> None:
    assert flags.directory_path("./data") == "./data"
    with pytest.raises(flags.InvalidValue, match="empty path"):
        flags.directory_path(" ")


# --- the parser: environment, errors -----------------------------------------------------


def refusal(capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str]) -> str:
    """The one line atpd's parser prints before exiting 2."""
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, environ)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error.rstrip("\n")


def test_defaults_are_unchanged() -> None:
    args = parse_args([], {})
    assert (args.listen, args.data_dir, args.default_ttl, args.sync) == (
        "127.0.0.1:50051", "./data", 900, "on")
    assert (args.map_size_mb, args.safety_stock_priority, args.grace) == (1024, 100, 5.0)
    assert args.max_data_mb == 16384
    assert (args.journal_retention, args.metrics_port, args.metrics_host, args.log_level) == (
        7 * 86400, 0, "127.0.0.1", "INFO")
    assert (args.journal_retention_events, args.closed_retention, args.idempotency_window) == (
        0, 7 * 86400, 86400)


def test_variables_go_through_the_same_validators() -> None:
    args = parse_args([], {"ATP_DEFAULT_TTL": "15m", "ATP_SYNC": "OFF", "ATP_GRACE": "500ms",
                           "ATP_LOG_LEVEL": "debug", "ATP_MAP_SIZE_MB": "64"})
    assert (args.default_ttl, args.sync, args.grace) == (900, "off", 0.5)
    assert (args.log_level, args.map_size_mb) == ("DEBUG", 64)


def test_a_flag_wins_over_its_variable() -> None:
    assert parse_args(["--default-ttl", "60"], {"ATP_DEFAULT_TTL": "15m"}).default_ttl == 60


def test_a_bad_flag_names_the_flag_and_prints_no_usage(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, ["--default-ttl", "-5"], {})
    assert line.startswith("atpd: argument --default-ttl: '-5' is negative")
    assert "usage" not in line


def test_a_bad_variable_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, [], {"ATP_DEFAULT_TTL": "abc"})
    assert line.startswith("atpd: ATP_DEFAULT_TTL=abc: 'abc' is not a duration")


def test_a_bad_variable_is_reported_even_under_its_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = refusal(capsys, ["--journal-retention-events", "5"],
                   {"ATP_JOURNAL_RETENTION_EVENTS": "-1"})
    assert line.startswith("atpd: ATP_JOURNAL_RETENTION_EVENTS=-1: '-1' is out of range")


def test_an_unprintable_variable_stays_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, [], {"ATP_LOG_LEVEL": "INFO\nDEBUG"})
    assert line.startswith("atpd: ATP_LOG_LEVEL='INFO\\nDEBUG': ")


# --- config_from ---------------------------------------------------------------------------


def test_metrics_bind_to_the_metrics_host_not_the_listen_host() -> None:
    # Plaintext on 0.0.0.0 needs --insecure (the loopback-only rule, tests/integration/test_tls).
    args = parse_args(["--listen", "0.0.0.0:0", "--metrics-port", "9100", "--insecure"], {})
    assert config_from(args).metrics_listen == "127.0.0.1:9100"


def test_metrics_host_flag_and_variable_reach_the_config() -> None:
    by_flag = parse_args(["--metrics-port", "9100", "--metrics-host", "::1"], {})
    assert config_from(by_flag).metrics_listen == "[::1]:9100"
    by_variable = parse_args([], {"ATP_METRICS_PORT": "9100", "ATP_METRICS_HOST": "10.0.0.5",
                                  "ATP_INSECURE": "1"})
    assert config_from(by_variable).metrics_listen == "10.0.0.5:9100"


def test_metrics_port_0_serves_no_metrics() -> None:
    assert config_from(parse_args(["--metrics-host", "0.0.0.0"], {})).metrics_listen is None


def test_config_carries_the_parsed_values() -> None:
    config = config_from(parse_args(
        ["--default-ttl", "1h", "--map-size-mb", "64", "--sync", "off", "--grace", "2s",
         "--journal-retention-events", "10", "--journal-retention", "36h",
         "--closed-retention", "30s", "--idempotency-window", "15m",
         "--safety-stock-priority", "-3"], {}))
    assert config.ledger.default_ttl_seconds == 3600
    assert config.ledger.safety_stock_priority_min == -3
    assert (config.map_size_bytes, config.sync, config.grace_seconds) == (64 << 20, False, 2.0)
    assert config.journal_retention_events == 10
    assert config.journal_retention_s == 36 * 3600
    assert (config.ledger.closed_retention_s, config.ledger.idempotency_window_s) == (30, 900)


def test_a_bare_journal_retention_number_is_read_as_seconds_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from atp.daemon import warn_of_bare_journal_retention

    warn_of_bare_journal_retention(["--journal-retention", "100000"], {})
    warn_of_bare_journal_retention(["--journal-retention=7d"], {"ATP_JOURNAL_RETENTION": "0"})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "--journal-retention-events" in warnings[0]
    assert parse_args(["--journal-retention", "100000"], {}).journal_retention == 100000
