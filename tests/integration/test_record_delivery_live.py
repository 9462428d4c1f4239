"""Reservations.RecordDelivery against a real atpd: reserve, commit, fulfil, record, read back;
a correction through atpctl; `atpctl kpi` reports the perfect-order measures; the delivery
metrics are served; and a kill -9 restart keeps the recorded delivery."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from atp.client import AtpError, Client
from atp.v1 import common_pb2
from tests.support.atpd import AtpdProcess, free_port

pytestmark = pytest.mark.integration

FULFILLED = common_pb2.Reservation.State.FULFILLED
_SCRIPT = Path(sys.executable).with_name("atpctl")
ATPCTL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "atp.cli"]


def today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def atpctl(target: str, *arguments: str) -> str:
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [*ATPCTL, "--target", target, *arguments], capture_output=True, text=True, timeout=60,
        env=dict(os.environ))
    assert result.returncode == 0, f"atpctl {arguments}: {result.stdout}\n{result.stderr}"
    return result.stdout


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def atpd(tmp_path: Path, metrics_port: int, gateways: int) -> Iterator[AtpdProcess]:
    # With gateways the ledger's delivery counters are the writer's, served on metrics_port.
    with AtpdProcess(tmp_path / "data", "--sync", "on", "--metrics-port",
                     str(metrics_port), gateways=gateways) as server:
        yield server


@pytest.fixture
def client(atpd: AtpdProcess) -> Iterator[Client]:
    with Client(atpd.target, timeout_s=10) as connected:
        connected.upsert_node(node_id="DC1")
        connected.adjust_stock([{"sku": "A", "node_id": "DC1", "type": "RECEIPT",
                                 "quantity": 100}])
        yield connected


def reserve(client: Client, reservation_id: str, quantity: int = 4) -> common_pb2.Reservation:
    ship = (today() + datetime.timedelta(days=2)).isoformat()
    return client.reserve(reservation_id, [{"line_id": "l1", "sku": "A", "quantity": quantity,
                                            "node_id": "DC1", "ship_date": ship}],
                          commit=True, channel="web", customer_id="c1")


@pytest.mark.one_process_for_time(reason="time: a server of its own for the ledger's "
                                   "delivery records; kill -9 behind gateways is tests/gateway's")
def test_record_read_back_correct_report_and_survive_kill_9(
    atpd: AtpdProcess, client: Client, metrics_port: int
) -> None:
    created = reserve(client, "o1")
    assert created.first_promise_date == created.promise_date
    # Nothing shipped yet: refused, and it says why.
    with pytest.raises(AtpError) as refused:
        client.record_delivery("o1", today(), 4, request_id="too-early")
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.reason == "INVALID_STATE"
    assert "nothing shipped yet" in str(refused.value)
    client.fulfill("o1", request_id="ship-o1")

    recorded = client.record_delivery("o1", today(), 4, damaged_units=1, request_id="d1")
    assert recorded.state == FULFILLED
    assert (recorded.delivery.units_delivered, recorded.delivery.damaged_units) == (4, 1)
    assert recorded.delivery.documentation_correct is True
    assert recorded.delivery.record_time.seconds > 0
    read = client.get_reservation("o1")
    assert read.delivery == recorded.delivery and read.version == recorded.version

    # A bad date names its field.
    with pytest.raises(AtpError) as bad:
        client.record_delivery("o1", today() + datetime.timedelta(days=5), 4)
    assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "delivery.delivered_date" in str(bad.value)

    # A correction through atpctl: all 4 undamaged, but the paperwork was wrong.
    shown = atpctl(atpd.target, "reservation", "record-delivery", "o1", "--delivered-date",
                   today().isoformat(), "--units", "4", "--documentation-wrong",
                   "--request-id", "d2")
    assert "documentation wrong" in shown
    corrected = client.get_reservation("o1")
    assert (corrected.delivery.damaged_units, corrected.delivery.documentation_correct) == (
        0, False)

    # A second order, perfect.
    reserve(client, "o2", quantity=2)
    client.fulfill("o2", request_id="ship-o2")
    client.record_delivery("o2", today(), 2, request_id="d3")

    # atpctl kpi: the latest record per reservation: o1 on time, in full, undamaged, paperwork
    # wrong; o2 perfect. Rates 1, 1, 1, 1/2: perfect order rate 1/2; perfect on all four 1/2.
    report: dict[str, Any] = json.loads(atpctl(atpd.target, "kpi", "--json", "--by-channel"))
    perfect = report["perfect_order"]
    assert perfect["orders"] == 2
    assert perfect["on_time"] == {"rate": 1.0, "met": 2, "judged": 2, "not_judged": 0}
    assert perfect["documentation_accurate"] == {"rate": 0.5, "met": 1}
    assert perfect["perfect_order_rate"] == 0.5 and perfect["all_four_share"] == 0.5
    assert perfect["by_channel"]["web"]["perfect_order_rate"] == 0.5
    table = atpctl(atpd.target, "kpi", "--by-customer")
    assert "perfect order rate" in table and "perfect orders by customer" in table
    assert any(line.split()[:2] == ["c1", "2"] for line in table.splitlines())

    # Metrics: every record counts (o1 twice, o2 once).
    samples = scrape(metrics_port)
    assert samples[("atp_deliveries_recorded_total", (("channel", "web"),))] == 3
    met = "atp_delivery_measures_met_total"
    # d1 (1 damaged) and d2 (paperwork wrong) were not perfect; d3 was.
    assert samples[(met, (("channel", "web"), ("measure", "perfect")))] == 1
    assert samples[(met, (("channel", "web"), ("measure", "damage_free")))] == 2  # d2, d3
    assert samples[(met, (("channel", "web"), ("measure", "documentation_accurate")))] == 2
    assert samples[(met, (("channel", "web"), ("measure", "on_time")))] == 3

    atpd.kill()
    atpd.restart()
    with Client(atpd.target, timeout_s=10) as again:
        after = again.get_reservation("o1")
        assert after.delivery == corrected.delivery and after.version == corrected.version
        assert after.state == FULFILLED
        # The same request id is a replay after the restart, not another record.
        replay = again.record_delivery("o1", today(), 4, documentation_correct=False,
                                       request_id="d2")
        assert replay.version == corrected.version
    # The journal kept the records: the report reads the same after the restart.
    again_report = json.loads(atpctl(atpd.target, "kpi", "--json"))
    assert again_report["perfect_order"]["perfect_order_rate"] == 0.5
