"""The atpctl console script as a subprocess against a live atpd: the README walkthrough,
then at-risk, reallocate, watch and kpi."""

from __future__ import annotations

import datetime
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from atp.client import Client
from atp.tls import TlsOptions
from tests.support.atpd import AtpdProcess, free_port
from tests.support.certs import CertificateAuthority

pytestmark = pytest.mark.integration


@pytest.fixture
def atpd(tmp_path: Path) -> Iterator[AtpdProcess]:
    """A fresh atpd; without fsync, since these tests are about the CLI, not durability."""
    with AtpdProcess(tmp_path / "data", "--sync", "off") as server:
        yield server


@pytest.fixture
def client(atpd: AtpdProcess) -> Iterator[Client]:
    with Client(atpd.target) as atp:
        yield atp


_SCRIPT = Path(sys.executable).with_name("atpctl")
ATPCTL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "atp.cli"]


def atpctl(target: str, *arguments: str, expect: int = 0,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `atpctl --target TARGET ...` (with `env` added to the environment); asserts its
    exit code."""
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [*ATPCTL, "--target", target, *arguments],
        env={**os.environ, **env} if env else None,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expect, (
        f"atpctl {' '.join(arguments)} exited {result.returncode}, expected {expect}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def atpctl_all(
    target: str, *commands: tuple[str, ...], expect: int = 0
) -> list[subprocess.CompletedProcess[str]]:
    """Runs read-only commands side by side (each is a process start): their results in order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda command: atpctl(target, *command, expect=expect), commands))


def atpctl_json(target: str, *arguments: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(atpctl(target, *arguments, "--json", env=env).stdout)


def position(document: dict[str, Any], node_id: str) -> dict[str, int]:
    """One position of `stock get --json`, with its int64 fields (JSON strings) as ints."""
    (found,) = [p for p in document["positions"] if p["node_id"] == node_id]
    return {
        key: int(value)
        for key, value in found.items()
        if key not in ("sku", "node_id", "timeline", "short", "channels")
    }


def iso(date: dict[str, int]) -> str:
    """A google.type.Date of a --json document as YYYY-MM-DD."""
    return f"{date['year']:04d}-{date['month']:02d}-{date['day']:02d}"


def tomorrow() -> str:
    return (datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)).isoformat()


# ---------------------------------------------------------------------------------------------
# The README's "Five minutes with atpctl"


def test_readme_walkthrough(atpd: AtpdProcess) -> None:
    readme_walkthrough(atpd, {})


def test_atpctl_over_mutual_tls(tmp_path: Path) -> None:
    """atpctl against an atpd that requires client certificates, given its CA, certificate and
    key by ATP_TLS_* variables: the walkthrough's first steps (each command shares one
    channel set-up, so the whole walkthrough again proves no more; it cost ~5 s of the suite)."""
    ca = CertificateAuthority(tmp_path / "pki")
    server, client = ca.issue("server"), ca.issue("client")
    env = {"ATP_TLS_CA": str(ca.cert), "ATP_TLS_CERT": str(client.cert),
           "ATP_TLS_KEY": str(client.key)}
    tls = TlsOptions(ca=str(ca.cert), cert=str(client.cert), key=str(client.key))
    with AtpdProcess(tmp_path / "data", "--sync", "off", "--tls-cert", str(server.cert),
                     "--tls-key", str(server.key), "--client-ca", str(ca.cert),
                     tls=tls) as server_process:
        # Without a client certificate: refused, in one line.
        no_cert = atpctl(server_process.target, "--tls-ca", str(ca.cert), "health", expect=1)
        assert no_cert.stderr.startswith("error: cannot reach atpd")
        assert "--tls-cert and --tls-key" in no_cert.stderr, no_cert.stderr  # what to try
        target = server_process.target
        assert atpctl(target, "health", env=env).stdout.strip() == "SERVING"
        atpctl(target, "nodes", "upsert", "DC1", "--region", "EU", "--lane", "EU:2:5", env=env)
        atpctl(target, "stock", "adjust", "--sku", "SKU-1", "--node", "DC1", "--type", "RECEIPT",
               "--quantity", "10", env=env)  # fmt: skip
        held = atpctl_json(target, "reserve", "order-1", "--line", "l1:SKU-1:3@DC1", env=env)
        assert held["state"] == "HELD"
        committed = atpctl_json(target, "reservation", "commit", "order-1", env=env)
        assert committed["state"] == "COMMITTED"
        events = atpctl(target, "watch", "--until-head", env=env).stdout
        assert "RESERVATION_COMMITTED" in events


def readme_walkthrough(atpd: AtpdProcess, env: dict[str, str]) -> None:
    target = atpd.target

    ran: list[tuple[str, ...]] = []

    def ctl(*arguments: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        if expect == 0:
            ran.append(arguments)
        return atpctl(target, *arguments, expect=expect, env=env)

    def ctl_json(*arguments: str) -> Any:
        ran.append(arguments)
        return atpctl_json(target, *arguments, env=env)

    readme = readme_walkthrough_text()

    assert ctl("health").stdout.strip() == "SERVING"

    ctl("nodes", "upsert", "DC1", "--kind", "DC", "--region", "EU",
           "--handling-days", "1", "--lane", "EU:2:5")  # fmt: skip
    ctl("nodes", "upsert", "STORE7", "--kind", "STORE", "--region", "EU",
           "--lane", "EU:0:9")  # fmt: skip
    nodes = ctl("nodes", "list").stdout
    assert "DC1" in nodes and "STORE7" in nodes and "EU:2:5" in nodes
    assert_shown_in_readme(nodes, readme)

    ctl("stock", "adjust", "--sku", "SKU-1", "--node", "DC1", "--type", "RECEIPT",
           "--quantity", "100")  # fmt: skip
    ctl("stock", "adjust", "--sku", "SKU-1", "--node", "STORE7", "--type", "RECEIPT",
           "--quantity", "5")  # fmt: skip
    ctl("supply", "upsert", "--id", "PO-1", "--sku", "SKU-1", "--node", "DC1",
           "--quantity", "50", "--expected", "2030-01-15")  # fmt: skip
    timeline = ctl("stock", "get", "SKU-1", "--timeline").stdout
    assert "2030-01-15" in timeline and "150" in timeline  # 100 now, +50 when PO-1 lands

    promise = ctl("promise", "--line", "l1:SKU-1:8", "--region", "EU", "--explain")
    assert "complete: yes" in promise.stdout
    assert "chosen" in promise.stdout and "STORE7" in promise.stdout  # why the store lost

    held = ctl_json("reserve", "order-1", "--line", "l1:SKU-1:3@DC1", "--region", "EU")
    assert held["state"] == "HELD" and held["lines"][0]["node_id"] == "DC1"
    sourced = ctl_json("reserve", "order-2", "--line", "l1:SKU-1:8", "--region", "EU",
                          "--commit")  # fmt: skip
    assert sourced["state"] == "COMMITTED"
    assert sourced["lines"][0]["node_id"] == "DC1"  # sourced: the store has only 5
    assert iso(sourced["promise_date"]) == promise_date_of(promise.stdout)

    assert "COMMITTED" in ctl("reservation", "commit", "order-1").stdout
    fulfilled = ctl_json("reservation", "fulfill", "order-1")
    assert fulfilled["state"] == "FULFILLED"
    assert int(fulfilled["lines"][0]["fulfilled_quantity"]) == 3
    assert ctl_json("reservation", "get", "order-2")["state"] == "COMMITTED"

    ctl("hold", "place", "--id", "QA-1", "--sku", "SKU-1", "--node", "DC1",
           "--quantity", "10", "--reason", "QA sample")  # fmt: skip
    ctl("stock", "count", "--sku", "SKU-1", "--node", "STORE7", "--quantity", "2")
    stock = ctl_json("stock", "get", "SKU-1")
    dc1 = position(stock, "DC1")
    assert (dc1["on_hand"], dc1["allocated"], dc1["held"], dc1["inbound"]) == (97, 8, 10, 50)
    assert dc1["available"] == 97 - 8 - 10
    assert position(stock, "STORE7")["on_hand"] == 2
    (total,) = stock["totals"]
    assert int(total["on_hand"]) == 99
    assert_shown_in_readme(ctl("stock", "get", "SKU-1").stdout, readme)

    assert_shown_in_readme(ctl("hold", "release", "QA-1").stdout, readme)
    assert position(ctl_json("stock", "get", "SKU-1"), "DC1")["held"] == 0

    # A bad command: one clear line on stderr, exit 1, and nothing changed.
    refused = ctl("reserve", "order-3", "--line", "l1:SKU-1:100000", "--region", "EU",
                     expect=1)  # fmt: skip
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY")
    assert "Traceback" not in refused.stderr
    missing = ctl("reservation", "get", "order-3", expect=1)
    assert missing.stderr.startswith("error: NOT_FOUND")
    usage = ctl("reserve", "order-4", "--line", "no-quantity", expect=2)
    assert "LINE_ID:SKU:QTY" in usage.stderr
    # Every command run above is one the README shows, as it shows it.
    commands = readme_commands(readme)
    for arguments in ran:
        assert tuple(a for a in arguments if a != "--json") in commands, arguments

    assert atpd.stop() == 0
    verified = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [*ATPCTL, "db", "verify", "--data-dir", str(atpd.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "no problems" in verified.stdout
    # And the server down: a one-line error, not a traceback.
    down = ctl("--timeout", "1", "health", expect=1)
    assert down.stderr.startswith("error: cannot reach atpd")


def readme_walkthrough_text() -> str:
    """The README's "Five minutes with atpctl" section."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    return readme.split("## Five minutes with atpctl", 1)[1].split("\n## ", 1)[0]


def readme_commands(section: str) -> set[tuple[str, ...]]:
    """The atpctl commands of the section's sh blocks, without `atpctl` and comments."""
    commands = set()
    for line in section.splitlines():
        if line.startswith("atpctl "):
            commands.add(tuple(shlex.split(line, comments=True)[1:]))
    return commands


def assert_shown_in_readme(output: str, section: str) -> None:
    """The README's expected output for a step is what atpctl printed (line by line)."""
    shown = set(section.splitlines())
    missing = [line for line in output.splitlines() if line and line not in shown]
    assert not missing, f"README's expected output lacks {missing}"


def promise_date_of(promise_text: str) -> str:
    first_line = promise_text.splitlines()[0]  # "promise date: 2026-01-05    complete: yes"
    return first_line.split()[2]


# ---------------------------------------------------------------------------------------------
# At risk, reallocation, the journal, the KPIs


def shortage(client: Client) -> None:
    """DC1 (2 days to the EU) and DC2 (4 days); r1 then r2 at DC1; a shrinkage puts r2 at risk."""
    for node_id, transit_days in (("DC1", 2), ("DC2", 4)):
        client.upsert_node(node_id=node_id, region="EU", handling_days=1,
                           lanes=[{"region": "EU", "transit_days": transit_days, "cost": 5}])  # fmt: skip
        client.adjust_stock(
            [{"sku": "SKU-1", "node_id": node_id, "type": "RECEIPT", "quantity": 10}]
        )
    for reservation_id, quantity in (("r1", 4), ("r2", 5)):
        client.reserve(reservation_id, [{"line_id": "l1", "sku": "SKU-1", "quantity": quantity}],
                       destination_region="EU", commit=True)  # fmt: skip
    client.adjust_stock([{"sku": "SKU-1", "node_id": "DC1", "type": "SHRINKAGE", "quantity": 6,
                          "reason": "broken shelf"}])  # fmt: skip


def nodes_of(client: Client, reservation_id: str) -> list[tuple[str, int]]:
    reservation = client.get_reservation(reservation_id)
    return [(line.node_id, line.quantity) for line in reservation.lines]


def test_at_risk_reallocate_watch_and_kpi(atpd: AtpdProcess, client: Client) -> None:
    target = atpd.target
    shortage(client)

    # at-risk: the youngest demand at DC1 no longer fits.
    table, as_json, at_dc1, at_dc2, other_sku, plan_text = atpctl_all(
        target,
        ("at-risk",),
        ("at-risk", "--json"),
        ("at-risk", "--json", "--sku", "SKU-1", "--node", "DC1"),
        ("at-risk", "--json", "--node", "DC2"),
        ("at-risk", "--json", "--sku", "OTHER"),
        ("reallocate",),
    )
    assert "r2" in table.stdout and "SHORTAGE" in table.stdout and "r1 " not in table.stdout
    assert "1 line at risk in 1 reservation (5 units)" in table.stdout
    at_risk = json.loads(as_json.stdout)
    assert at_risk["count"] == 1
    (line,) = at_risk["lines"]
    assert (line["reservation_id"], line["line_id"], line["node_id"]) == ("r2", "l1", "DC1")
    assert (line["quantity"], line["reason"], line["sku"]) == (5, "SHORTAGE", "SKU-1")
    assert line["ship_date"] == tomorrow()
    assert json.loads(at_dc1.stdout)["count"] == 1
    assert json.loads(at_dc2.stdout)["count"] == 0
    assert json.loads(other_sku.stdout)["count"] == 0

    # reallocate: a dry run shows the plan and changes nothing.
    plan = plan_text.stdout
    promise = client.get_reservation("r2").promise_date
    old_promise = f"{promise.year:04d}-{promise.month:02d}-{promise.day:02d}"
    assert nodes_of(client, "r1") == [("DC1", 4)]
    assert f"reservation r2: promise {old_promise} -> " in plan
    assert "slipped: yes, unfilled: 0" in plan
    assert "5 @ DC1" in plan and "5 @ DC2" in plan
    assert "dry run: 1 reservation, 1 slipped" in plan
    plan_sequence = int(plan.split("--plan-sequence ")[1].split()[0])
    assert nodes_of(client, "r2") == [("DC1", 5)]
    dry = atpctl_json(target, "reallocate", "--ids", "r2")
    assert dry["applied"] is False and int(dry["plan_sequence"]) == plan_sequence
    (reservation_plan,) = dry["plans"]
    assert reservation_plan["new_lines"][0]["node_id"] == "DC2"
    assert reservation_plan["slipped"] is True

    # The ledger moves: applying the plan reviewed earlier is refused, plainly.
    client.adjust_stock([{"sku": "SKU-9", "node_id": "DC2", "type": "RECEIPT", "quantity": 1}])
    stale = atpctl(target, "reallocate", "--apply", "--plan-sequence", str(plan_sequence),
                   expect=1)  # fmt: skip
    assert "PLAN_STALE" in stale.stderr and "nothing was applied" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert nodes_of(client, "r2") == [("DC1", 5)]

    # --apply shows the plan it applies and applies exactly that one.
    applied = atpctl(target, "reallocate", "--apply", "--ids", "r2").stdout
    assert "reservation r2:" in applied and "applied: 1 reservation, 1 slipped" in applied
    moved = atpctl_json(target, "reservation", "get", "r2")
    assert [(line["node_id"], int(line["quantity"])) for line in moved["lines"]] == [("DC2", 5)]
    assert iso(moved["promise_date"]) > old_promise
    assert atpctl_json(target, "at-risk")["count"] == 0
    nothing = atpctl(target, "reallocate", "--apply")
    assert "nothing to reallocate" in nothing.stdout

    # watch --until-head: the journal so far, one line per event, then exit 0.
    client.fulfill("r1")  # for the KPIs below
    head = client.reallocate(dry_run=True).plan_sequence
    journal_run, as_json, only_r1, later, report_run, text_run, future_run = atpctl_all(
        target,
        ("watch", "--until-head"),
        ("watch", "--until-head", "--json", "--type", "line_at_risk,RESERVATION_REALLOCATED"),
        ("watch", "--until-head", "--json", "--reservation", "r1"),
        ("watch", "--until-head", "--from", str(head)),
        ("kpi", "--json"),
        ("kpi",),
        ("kpi", "--json", "--since", tomorrow()),
    )
    journal = journal_run.stdout.splitlines()
    sequences = [int(text.split()[0]) for text in journal]
    assert sequences[-1] == head
    assert sequences == list(range(1, len(sequences) + 1))
    (risk_line,) = [text for text in journal if " LINE_AT_RISK " in text]
    assert "reservation=r2" in risk_line and "line_id=l1" in risk_line
    assert "reason=SHORTAGE" in risk_line and "quantity=5" in risk_line
    (moved_line,) = [text for text in journal if "RESERVATION_REALLOCATED" in text]
    assert "slipped=true" in moved_line and f"old_promise_date={old_promise}" in moved_line
    shrink = [text for text in journal if "SHRINKAGE" in text]
    assert shrink and 'reason="broken shelf"' in shrink[0]

    events = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert [event["type"] for event in events] == ["LINE_AT_RISK", "RESERVATION_REALLOCATED"]
    assert events[0]["data"]["quantity"] == 5 and events[0]["reservation_id"] == "r2"
    assert events[1]["data"]["slipped"] is True
    r1_types = [json.loads(text) for text in only_r1.stdout.splitlines()]
    assert {event["reservation_id"] for event in r1_types} == {"r1"}
    assert [event["type"] for event in r1_types] == ["RESERVATION_CREATED", "RESERVATION_FULFILLED"]
    assert [int(text.split()[0]) for text in later.stdout.splitlines()] == [head]

    # kpi: r1 shipped on time, r2's promise slipped; one at-risk episode ended by reallocation.
    report = json.loads(report_run.stdout)
    assert report["reservations_created"] == 2
    assert report["fill_rate"] == {"rate": 4 / 9, "units_fulfilled": 4, "units_requested": 9}
    promises = report["promises"]
    assert (promises["kept"], promises["slipped"], promises["judged"]) == (1, 1, 2)
    assert promises["kept_share"] == 0.5
    assert report["at_risk"]["episodes"] == 1 and report["at_risk"]["open"] == 0
    assert report["at_risk"]["ended_by"] == {"reallocated": 1}
    assert report["at_risk"]["mean_seconds"] >= 0
    assert report["reallocations"] == {"reservations": 1, "slipped": 1}
    assert report["outcomes"]["FULFILLED"] == 1 and report["outcomes"]["COMMITTED"] == 1
    text = text_run.stdout
    assert "fill rate" in text and "44.4% (4 of 9 units shipped)" in text
    assert "50.0% (1 of 2;" in text
    future = json.loads(future_run.stdout)
    assert future["reservations_created"] == 0 and future["fill_rate"]["rate"] is None
    backwards, bad_date = atpctl_all(
        target,
        ("kpi", "--since", "2030-01-02", "--until", "2030-01-01"),
        ("kpi", "--since", "last tuesday"),
        expect=2,
    )
    assert "--until must be later than --since" in backwards.stderr
    assert "expected an ISO date" in bad_date.stderr


def test_watch_follows_live_events_until_ctrl_c(atpd: AtpdProcess, client: Client) -> None:
    target = atpd.target
    client.upsert_node(node_id="DC1", region="EU")
    watcher = subprocess.Popen(
        [*ATPCTL, "--target", target, "watch", "--from", "2", "--type", "STOCK_MOVED", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(text) for text in iter(watcher.stdout.readline, "")],  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        client.adjust_stock([{"sku": "A", "node_id": "DC1", "type": "RECEIPT", "quantity": 7}])
        event = json.loads(lines.get(timeout=20))
        assert (event["type"], event["sku"], event["data"]["quantity"]) == ("STOCK_MOVED", "A", 7)
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=20) == 0
        assert watcher.stderr is not None and watcher.stderr.read() == ""  # quietly
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_watch_follows_atpd_restarts_without_gap_or_duplicate(tmp_path: Path) -> None:
    port = free_port()
    server = AtpdProcess(tmp_path / "data", "--sync", "off", "--listen", f"127.0.0.1:{port}")
    server.start()
    watcher = subprocess.Popen(
        [*ATPCTL, "--target", server.target, "watch", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        assert watcher.stdout is not None
        for text in iter(watcher.stdout.readline, ""):
            lines.put(text)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        sequences: list[int] = []
        for restart in (server.stop, server.kill, None):
            with Client(server.target) as client:
                client.upsert_node(node_id=f"DC{len(sequences)}", region="EU")
            sequences.append(int(json.loads(lines.get(timeout=20))["sequence"]))
            if restart is not None:
                restart()
                server.start()
        assert sequences == [1, 2, 3]  # each once, across a SIGTERM and a kill -9 restart
        assert lines.empty()
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=20) == 0
        assert watcher.stderr is not None and watcher.stderr.read() == ""
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        if server.process is not None:
            server.stop()


def test_watch_from_a_sequence_no_longer_retained_is_a_clear_error(tmp_path: Path) -> None:
    with AtpdProcess(tmp_path / "data", "--journal-retention-events", "2", "--sync", "off") as server:
        with Client(server.target) as client:
            client.upsert_node(node_id="DC1")
            for quantity in (1, 2, 3):
                movement = {"sku": "A", "node_id": "DC1", "type": "RECEIPT", "quantity": quantity}
                client.adjust_stock([movement])
        gone = atpctl(server.target, "watch", "--from", "2", "--until-head", expect=1)
        assert gone.stderr.startswith("error: OUT_OF_RANGE")
        assert "Traceback" not in gone.stderr
        # In --from's terms, not the API's "after 1" (found by a new-user review).
        assert "events from 2 are no longer retained; the oldest is" in gone.stderr


# ---------------------------------------------------------------------------------------------
# Server behaviour the CLI shows as it is; these assert what it should be.


def test_at_risk_reason_follows_the_node_back_to_active(atpd: AtpdProcess, client: Client) -> None:
    lanes = [{"region": "EU", "transit_days": 2}]
    client.upsert_node(node_id="DC1", region="EU", handling_days=1, lanes=lanes)
    client.adjust_stock([{"sku": "SKU-1", "node_id": "DC1", "type": "RECEIPT", "quantity": 10}])
    for reservation_id in ("r1", "r2"):
        client.reserve(reservation_id, [{"line_id": "l1", "sku": "SKU-1", "quantity": 4}],
                       destination_region="EU", commit=True)  # fmt: skip
    client.upsert_node(node_id="DC1", region="EU", handling_days=1, lanes=lanes, active=False)
    client.adjust_stock([{"sku": "SKU-1", "node_id": "DC1", "type": "SHRINKAGE", "quantity": 5}])
    inactive = atpctl_json(atpd.target, "at-risk")
    assert {(line["reservation_id"], line["reason"]) for line in inactive["lines"]} == {
        ("r1", "NODE_INACTIVE"), ("r2", "NODE_INACTIVE"),
    }  # fmt: skip

    client.upsert_node(node_id="DC1", region="EU", handling_days=1, lanes=lanes, active=True)
    active = atpctl_json(atpd.target, "at-risk")  # 5 on hand for 8: r2 (the younger) is short
    assert [(line["reservation_id"], line["reason"]) for line in active["lines"]] == [
        ("r2", "SHORTAGE")
    ]


def test_watch_by_sku_shows_the_whole_life_of_its_reservations(
    atpd: AtpdProcess, client: Client
) -> None:
    client.upsert_node(node_id="DC1", region="EU", lanes=[{"region": "EU", "transit_days": 2}])
    client.adjust_stock([{"sku": "SKU-1", "node_id": "DC1", "type": "RECEIPT", "quantity": 10}])
    client.reserve("r1", [{"line_id": "l1", "sku": "SKU-1", "quantity": 4}],
                   destination_region="EU")  # fmt: skip
    client.commit("r1")
    client.fulfill("r1")
    watched = atpctl(atpd.target, "watch", "--until-head", "--json", "--sku", "SKU-1").stdout
    types = [json.loads(text)["type"] for text in watched.splitlines()]
    assert "RESERVATION_CREATED" in types  # passes today: its data lists the lines' SKUs
    assert "RESERVATION_COMMITTED" in types and "RESERVATION_FULFILLED" in types
