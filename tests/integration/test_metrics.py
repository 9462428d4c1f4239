"""`atpd --metrics-port`: the Prometheus metrics README names, scraped from a live server."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.v1 import events_pb2, events_pb2_grpc, reservations_pb2
from tests.integration.helpers import CALL_TIMEOUT, Api, line, reserve, reserve_request, stocked
from tests.support.atpd import AtpdProcess, free_port

# Behind gateways, --metrics-port serves the sum of the processes' pages:
# tests/gateway/test_summed_metrics.py checks those totals.
pytestmark = [pytest.mark.integration, pytest.mark.one_process_for_time(
    reason="time: a server per test; summed metrics are tests/gateway's")]


@pytest.fixture
def metered(tmp_path: Path, gateways: int) -> Iterator[tuple[AtpdProcess, int]]:
    port = free_port()
    server = AtpdProcess(tmp_path / "data", "--metrics-port", str(port), gateways=gateways).start()
    try:
        yield server, port
    finally:
        server.kill()


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for sample in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)", sample)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_metrics_count_calls_streams_commits_and_reservations(
    metered: tuple[AtpdProcess, int],
) -> None:
    server, port = metered
    api = Api(server.channel())
    sku, node_id = stocked(api, 10)
    reserve(api, line("l1", sku, node_id, 2))
    with pytest.raises(grpc.RpcError):
        api.reservations.GetReservation(
            reservations_pb2.GetReservationRequest(reservation_id="nobody"), timeout=CALL_TIMEOUT)
    results = list(api.reservations.ReserveStream(
        iter([reserve_request(None, [line("l1", sku, node_id, 1)])]), timeout=CALL_TIMEOUT))
    assert results[0].WhichOneof("result") == "reservation"
    events = events_pb2_grpc.EventsStub(api.channel)
    assert list(events.Watch(events_pb2.WatchRequest(stop_at_head=True), timeout=CALL_TIMEOUT))

    samples = _scrape(port)
    assert samples['atp_rpc_total{code="OK",method="Reserve"}'] == 1
    assert samples['atp_rpc_total{code="NOT_FOUND",method="GetReservation"}'] == 1
    assert samples['atp_rpc_total{code="OK",method="ReserveStream"}'] == 1
    assert samples['atp_rpc_total{code="OK",method="Watch"}'] == 1
    assert samples['atp_rpc_latency_seconds_count{method="Reserve"}'] == 1
    assert samples['atp_reservations{state="HELD"}'] == 2
    assert samples["atp_commit_batches_total"] >= 3
    assert samples["atp_commit_batch_records_count"] >= 3
    assert samples["atp_commit_latency_seconds_count"] >= 3
    for name in ("atp_at_risk_lines", "atp_reservations_expired_total",
                 "atp_writer_waiting_commands"):
        assert name in samples, name


def test_metrics_say_what_runs_and_the_start_up_line_says_where_they_are(
    tmp_path: Path, gateways: int,
) -> None:
    port = free_port()
    with AtpdProcess(tmp_path / "data", "--metrics-port", str(port),
                     "--log-level", "INFO", gateways=gateways) as server:
        samples = _scrape(port)
        log = server.log_path.read_text()
    [build] = [name for name in samples if name.startswith("atp_build_info{")]
    assert 'version="' in build and 'python="' in build and 'grpc="' in build
    assert samples["process_resident_memory_bytes"] > 0
    assert samples["process_open_fds"] > 0
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_start_time_seconds"] > 1e9  # a Unix time
    assert samples["process_max_fds"] > 0
    assert samples["process_virtual_memory_bytes"] > 0
    assert not [name for name in samples if name.split("{")[0].endswith("_created")]  # no twins
    assert f"metrics at http://127.0.0.1:{port}/metrics" in log


def test_health_checks_are_counted_by_method_service_and_status(
    metered: tuple[AtpdProcess, int],
) -> None:
    server, port = metered
    before = _scrape(port)
    health = health_pb2_grpc.HealthStub(server.channel())
    request = health_pb2.HealthCheckRequest
    for _ in range(3):
        health.Check(request(service=""), timeout=CALL_TIMEOUT)
    health.Check(request(service="atp.v1.Writes"), timeout=CALL_TIMEOUT)
    for name in ("no.such.Service", "another.Unknown"):
        with pytest.raises(grpc.RpcError) as refused:
            health.Check(request(service=name), timeout=CALL_TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(request(service="atp.v1.Reservations"), timeout=CALL_TIMEOUT)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    unknown = health.Watch(request(service="no.such.Service"), timeout=CALL_TIMEOUT)
    assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    unknown.cancel()

    samples = _scrape(port)

    def counted(labels: str) -> float:
        name = f"atp_health_checks_total{{{labels}}}"
        return samples.get(name, 0) - before.get(name, 0)

    assert counted('method="Check",service="",status="SERVING"') == 3
    assert counted('method="Check",service="atp.v1.Writes",status="SERVING"') == 1
    # Names the server does not serve share one label value: clients cannot grow the metric.
    assert counted('method="Check",service="unknown",status="NOT_FOUND"') == 2
    assert counted('method="Watch",service="atp.v1.Reservations",status="SERVING"') == 1
    assert counted('method="Watch",service="unknown",status="SERVICE_UNKNOWN"') == 1
    assert not [name for name in samples
                if name.startswith("atp_health_checks_total") and "no.such" in name]
