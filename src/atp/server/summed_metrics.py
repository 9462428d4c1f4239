"""One /metrics for `atpd --gateways N`: the supervisor serves --metrics-port with the totals
of its processes.

Each child (the writer, each gateway) serves its own metrics page on a Unix socket in the
supervisor's private directory (`serve_page`: connect, read the Prometheus text to the end;
no HTTP). At each scrape the supervisor reads every child's page and combines them
(`combined`) by what each metric describes:

- the **transport** (`atp_rpc_*`, `atp_health_checks_total`): summed over the gateways. They
  take every public call; the writer's own counts are of the calls its gateways forwarded
  to it, which the gateways counted already.
- the **processes' resources** (CPU seconds, memory, open files, and the CPU spent keeping
  each copy of the ledger, `atp_follow_apply_cpu_seconds_total`): summed over all of them.
- everything else, the **ledger, storage, commits and replication**: the writer's. Its
  gateways hold copies of the same ledger (summing them would count each reservation N + 1
  times), and only the writer commits and replicates.

A child that does not answer (restarting) is left out of that scrape, and
`atp_gateways_scraped` says how many gateways were summed; a restarted gateway's counters
start again from 0, which Prometheus's rate() reads as a counter reset.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from atp.server.metrics import ServedRegistry

log = logging.getLogger("atp.metrics")

# The roles, as the supervisor names its children.
WRITER, GATEWAY = "writer", "gateway"
# How long a scrape waits for one child's page.
PAGE_TIMEOUT_S = 2.0
# Families summed over the gateways (the public calls), by name prefix (a counter's family
# name is without its _total).
GATEWAY_SUMMED_PREFIXES = ("atp_rpc", "atp_health_checks")
# Families summed over every process: what the deployment uses of the machine (the CPU each
# copy of the ledger costs too: the gateways', and the writer's when it follows a leader).
PROCESS_SUMMED = frozenset({"process_cpu_seconds", "process_resident_memory_bytes",
                            "process_virtual_memory_bytes", "process_open_fds",
                            "atp_follow_apply_cpu_seconds"})

Page = tuple[str, str]  # (role, Prometheus text)


def summed_over(family: str) -> str:
    """Whose values a family's total is made of: GATEWAY (summed over the gateways), "all"
    (summed over every process) or WRITER (the writer's alone)."""
    if family.startswith(GATEWAY_SUMMED_PREFIXES):
        return GATEWAY
    if family in PROCESS_SUMMED:
        return "all"
    return WRITER


def combined(pages: Iterable[Page]) -> list[Metric]:
    """The families of the children's pages, each combined as `summed_over` says."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for role, text in pages:
        for family in text_string_to_metric_families(text):
            whose = summed_over(family.name)
            if whose != "all" and whose != role:
                continue
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                series[key] = series.get(key, 0.0) + sample.value
    for name, metric in families.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class SummedCollector(Collector):
    """The combined metrics of the pages `pages()` reads at each scrape."""

    def __init__(self, pages: Callable[[], list[Page]]) -> None:
        self.pages = pages

    def collect(self) -> Iterator[Metric]:
        pages = self.pages()
        yield from combined(pages)
        yield GaugeMetricFamily(
            "atp_gateways_scraped", "Gateway processes whose metrics this scrape summed "
            "(atpd --gateways N; fewer than N while one restarts)",
            value=sum(1 for role, _ in pages if role == GATEWAY))


def read_page(path: str, timeout_s: float = PAGE_TIMEOUT_S) -> str | None:
    """A child's metrics page from its socket; None if it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout_s)
            connection.connect(path)
            chunks = []
            while chunk := connection.recv(1 << 16):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode()


class _PageServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve_page(registry: CollectorRegistry, path: str) -> socketserver.BaseServer:
    """Serves `registry`'s page to whoever connects to the Unix socket at `path` (a child of
    `atpd --gateways N`, for its supervisor; the directory keeps everyone else out)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the supervisor gave up on this scrape
                cast(socket.socket, self.request).sendall(generate_latest(registry))

    with contextlib.suppress(FileNotFoundError):  # left by this child's previous life
        os.unlink(path)
    server = _PageServer(path, Handler)
    threading.Thread(target=server.serve_forever, name="atp-metrics-page",
                     daemon=True).start()
    return server


class SummedMetricsServer(ServedRegistry):
    """The supervisor's /metrics: the children's pages combined, over HTTP, or HTTPS with
    `tls` (client certificates required when it names a client CA)."""

    def __init__(self, pages: Callable[[], list[Page]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SummedCollector(pages))
