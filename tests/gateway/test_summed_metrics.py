"""One scrape target for `atpd --gateways 2 --metrics-port P`: on P the totals (public calls
summed over the gateways, the ledger's gauges the writer's, CPU and memory summed over every
process), each process on its own port after P, and HTTPS (mutual TLS too) for all of them
with --tls-cert."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from atp.server.summed_metrics import GATEWAY, WRITER, combined, summed_over
from atp.tls import TlsOptions
from tests.gateway.support import GATEWAYS, channels, gateway_atpd
from tests.integration.helpers import Api, get_position, line, reserve, stocked, wait_for
from tests.support.atpd import free_port
from tests.support.certs import CertificateAuthority

READS = 12


def _page(*rows: str) -> str:
    return "\n".join(rows) + "\n"


GATEWAY_PAGE = _page(
    "# HELP atp_rpc_total RPCs", "# TYPE atp_rpc_total counter",
    'atp_rpc_total{code="OK",method="Reserve"} 3.0',
    "# HELP atp_rpc_latency_seconds latency", "# TYPE atp_rpc_latency_seconds histogram",
    'atp_rpc_latency_seconds_bucket{le="0.01",method="Reserve"} 2.0',
    'atp_rpc_latency_seconds_bucket{le="+Inf",method="Reserve"} 3.0',
    'atp_rpc_latency_seconds_count{method="Reserve"} 3.0',
    'atp_rpc_latency_seconds_sum{method="Reserve"} 0.5',
    "# HELP atp_reservations open", "# TYPE atp_reservations gauge",
    'atp_reservations{state="HELD"} 7.0',
    "# HELP process_cpu_seconds_total cpu", "# TYPE process_cpu_seconds_total counter",
    "process_cpu_seconds_total 1.5",
)
WRITER_PAGE = _page(
    "# HELP atp_rpc_total RPCs", "# TYPE atp_rpc_total counter",
    'atp_rpc_total{code="OK",method="Reserve"} 5.0',
    "# HELP atp_reservations open", "# TYPE atp_reservations gauge",
    'atp_reservations{state="HELD"} 7.0',
    "# HELP process_cpu_seconds_total cpu", "# TYPE process_cpu_seconds_total counter",
    "process_cpu_seconds_total 2.0",
)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _exposed(pages: list[tuple[str, str]]) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                  float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in combined(pages) for sample in family.samples}


def test_calls_are_summed_over_gateways_the_ledger_is_the_writers_cpu_over_all() -> None:
    totals = _exposed([(WRITER, WRITER_PAGE), (GATEWAY, GATEWAY_PAGE),
                       (GATEWAY, GATEWAY_PAGE)])
    reserve_ok = ("atp_rpc_total", (("code", "OK"), ("method", "Reserve")))
    assert totals[reserve_ok] == 6.0  # the gateways' 3 + 3; the writer's 5 were forwarded
    assert totals[("atp_rpc_latency_seconds_bucket", (("le", "0.01"),
                                                      ("method", "Reserve")))] == 4.0
    assert totals[("atp_rpc_latency_seconds_sum", (("method", "Reserve"),))] == 1.0
    assert totals[("atp_reservations", (("state", "HELD"),))] == 7.0  # one ledger, not 3
    assert totals[("process_cpu_seconds_total", ())] == 5.0
    # A writer that does not answer (restarting): the ledger's series are absent, not 0.
    without_writer = _exposed([(GATEWAY, GATEWAY_PAGE)])
    assert ("atp_reservations", (("state", "HELD"),)) not in without_writer
    assert summed_over("atp_health_checks") == GATEWAY
    assert summed_over("atp_commit_batches") == WRITER
    assert summed_over("atp_follow_apply_cpu_seconds") == "all"  # every copy's cost


def _scrape(port: int, context: ssl.SSLContext | None = None) -> str:
    scheme = "https" if context is not None else "http"
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=10,
                                context=context) as answer:
        return str(answer.read().decode())


@pytest.mark.integration
def test_one_scrape_target_has_the_totals_and_each_process_its_own(tmp_path: Path) -> None:
    port = free_port()
    server = gateway_atpd(tmp_path / "data", "--metrics-port", str(port)).start()
    try:
        api = Api(server.channel())
        sku, node = stocked(api, 50)  # an UpsertNode, an AdjustStock
        reserve(api, line("l1", sku, node, 2))
        for channel in channels(server, READS):  # spread over the gateways
            get_position(Api(channel), sku, node)
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="atp.v1.Writes"), timeout=10)
            channel.close()
        processes = [_samples(_scrape(port + 1 + offset)) for offset in range(GATEWAYS + 1)]
        gateways, writer = processes[:GATEWAYS], processes[GATEWAYS]

        def total() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return _samples(_scrape(port))

        def calls(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
                  method: str) -> float:
            return samples.get(("atp_rpc_total", (("code", "OK"), ("method", method))), 0.0)

        summed = total()
        assert calls(summed, "GetAvailability") == READS
        assert sum(calls(page, "GetAvailability") for page in gateways) == READS
        assert calls(writer, "GetAvailability") == 0  # reads never reach the writer
        # A write is counted once, where the public call was taken, whether the gateway
        # relayed the call (AdjustStock: the writer counts it too) or sent its command.
        for method in ("AdjustStock", "Reserve"):
            assert calls(summed, method) == 1
        assert calls(writer, "AdjustStock") == 1
        held = ("atp_reservations", (("state", "HELD"),))
        assert summed[held] == writer[held] == 1  # the writer's ledger, not 3 copies
        assert summed[("atp_gateways_scraped", ())] == GATEWAYS
        # A Check of the writer's health name is the writer's answer, counted once.
        writes_checked = ("atp_health_checks_total", (
            ("method", "Check"), ("service", "atp.v1.Writes"), ("status", "SERVING")))
        assert summed[writes_checked] == READS
        cpu = ("process_cpu_seconds_total", ())
        assert summed[cpu] >= max(page[cpu] for page in processes)
        assert summed[("atp_commit_batches_total", ())] >= 1
        # Each gateway applied the writes to its copy; the writer (leading) applies none.
        copying = ("atp_follow_apply_cpu_seconds_total", ())
        assert writer[copying] == 0
        assert all(page[copying] > 0 for page in gateways)
        assert summed[copying] >= max(page[copying] for page in gateways)
    finally:
        assert server.stop() == 0


@pytest.mark.integration
def test_metrics_over_mutual_tls_with_gateways(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    issued, client = ca.issue("server"), ca.issue("scraper")
    port = free_port()
    server = gateway_atpd(
        tmp_path / "data", "--metrics-port", str(port), "--tls-cert", str(issued.cert),
        "--tls-key", str(issued.key), "--client-ca", str(ca.cert))
    server.tls = TlsOptions(ca=str(ca.cert), cert=str(client.cert), key=str(client.key))
    server.start()
    try:
        stocked(Api(server.channel()), 5)
        context = ssl.create_default_context(cafile=str(ca.cert))
        context.load_cert_chain(str(client.cert), str(client.key))
        for offset in range(GATEWAYS + 2):  # the totals, each gateway, the writer
            page = wait_for(lambda offset=offset: _scrape(port + offset, context),
                            timeout_s=10)
            assert "atp_commit_batches_total" in page or "atp_rpc_total" in page
        assert 'method="AdjustStock"' in _scrape(port, context)
        anonymous = ssl.create_default_context(cafile=str(ca.cert))  # no client certificate
        with pytest.raises(OSError):
            _scrape(port, anonymous)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        assert server.stop() == 0


@pytest.mark.integration
def test_a_metrics_port_in_use_stops_atpd_before_it_starts_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0", "--data-dir",
             str(tmp_path / "data"), "--gateways", str(GATEWAYS), "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "data").exists()  # no writer was started
