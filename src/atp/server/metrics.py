"""Prometheus metrics: RPCs by method and code, latency, group commits, reservations, expiries.

Served by prometheus_client's HTTP server thread when atpd runs with --metrics-port. Gauges
read counters the ledger keeps as it goes, so a scrape never walks the ledger.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from atp.engine.clock import SteadyClock
from atp.engine.writer import Writer
from atp.ledger.delivery_measures import DeliveryTally
from atp.ledger.model import OPEN_RESERVATION_STATES, ReservationState
from atp.server.admission import AdmissionGate
from atp.server.handlers import Behaviour, Rebuilds, rebuilt, responses_of
from atp.server.health import CountedHealthServicer
from atp.store import StoreError
from atp.tls import ServerTls
from atp.v1 import replication_pb2

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000)


def build_info() -> dict[str, str]:
    """atp_build_info's labels: what a dashboard shows beside a member, and what an
    operator compares after an upgrade."""
    try:
        version = importlib.metadata.version("atp-engine")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        version = "unknown"
    return {"version": version, "python": platform.python_version(),
            "grpc": grpc.__version__}


class ServedRegistry:
    """A registry served on /metrics over HTTP, or HTTPS whose certificate can be reloaded
    (one atpd's Metrics, and the supervisor's sum of its children's)."""

    registry: CollectorRegistry
    _tls_context: ssl.SSLContext | None = None

    def serve(self, host: str, port: int, tls: ServerTls | None = None) -> None:
        """Serves /metrics over HTTP, or HTTPS with `tls` (client certificates required when
        it names a client CA)."""
        if tls is None:
            start_http_server(port, addr=host, registry=self.registry)
            return
        server, _ = start_http_server(
            port, addr=host, registry=self.registry, certfile=tls.cert, keyfile=tls.key,
            client_cafile=tls.client_ca, client_auth_required=tls.client_ca is not None)
        self._tls_context = cast(ssl.SSLSocket, server.socket).context

    def reload_tls(self, tls: ServerTls) -> None:
        """Later HTTPS connections present the certificate in `tls`'s files (read now)."""
        if self._tls_context is None:
            return
        self._tls_context.load_cert_chain(tls.cert, tls.key)
        if tls.client_ca:
            self._tls_context.load_verify_locations(cafile=tls.client_ca)


class Metrics(ServedRegistry):
    def __init__(self, writer: Writer, admission: AdmissionGate | None = None) -> None:
        # No `<counter>_created` / `<histogram>_created` series: one more series per labelled
        # child, on every scrape, that no dashboard or alert here reads (the process-wide switch
        # of prometheus_client; atpd builds one Metrics).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in 0.26
        self.registry = CollectorRegistry()
        self.rpcs = Counter(
            "atp_rpc", "RPCs answered, by method and status code", ["method", "code"],
            registry=self.registry,
        )
        self.rpc_latency = Histogram(
            "atp_rpc_latency_seconds", "RPC latency as seen by the server", ["method"],
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.commit_records = Histogram(
            "atp_commit_batch_records", "Records and journal entries per group commit",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.commit_latency = Histogram(
            "atp_commit_latency_seconds", "Duration of one durable LMDB write transaction",
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.registry.register(_LedgerCollector(writer))
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds...: the
        # process's own use, which retention keeps bounded.
        ProcessCollector(registry=self.registry)
        Info("atp_build", "The running atpd: its version and what it runs on",
             registry=self.registry).info(build_info())
        writer.on_commit = self.observe_commit
        if admission is not None:
            self._watch(admission)

    def _watch(self, admission: AdmissionGate) -> None:
        """Counts the calls the gate refuses (atp_rpc_total counts them too, as RESOURCE_EXHAUSTED,
        among other causes) and shows how many it holds."""
        refused = Counter(
            "atp_rpc_overload_refusals", "Unary calls refused with RESOURCE_EXHAUSTED (OVERLOADED) "
            "because concurrent_rpcs_max calls were in the server, by method", ["method"],
            registry=self.registry,
        )
        admission.on_refused = lambda method: refused.labels(method).inc()
        Gauge(
            "atp_rpc_in_flight_calls", "Unary calls in the server now (taken up, not yet answered)",
            registry=self.registry,
        ).set_function(lambda: admission.in_flight)

    def watch_health(self, health: CountedHealthServicer) -> None:
        """Counts the grpc.health.v1 answers: each Check, and each status a Watch sends."""
        checks = Counter(
            "atp_health_checks", "grpc.health.v1 answers by method (Check, Watch), service "
            "(\"\" for the whole server; \"unknown\" for a name it does not serve) and the "
            "status answered (SERVING, NOT_SERVING, SERVICE_UNKNOWN; NOT_FOUND for a Check of "
            "an unknown service)", ["method", "service", "status"], registry=self.registry,
        )
        health.on_answer = lambda method, service, status: checks.labels(
            method, service, status).inc()

    def watch_replication(
        self, status: Callable[[], replication_pb2.ReplicationStatus]
    ) -> None:
        """Replication gauges, read from this member's replication status at each scrape."""
        self.registry.register(_ReplicationCollector(status))

    def watch_snapshots(self, sent: Callable[[], int], received: Callable[[], int]) -> None:
        """Snapshots this member streamed to followers in full, and installed from a leader."""
        self.registry.register(_SnapshotCollector(sent, received))

    def observe_commit(self, records: int, seconds: float) -> None:
        self.commit_records.observe(records)
        self.commit_latency.observe(seconds)


class _ReplicationCollector(Collector):
    def __init__(self, status: Callable[[], replication_pb2.ReplicationStatus]) -> None:
        self.status = status

    def collect(self) -> Iterator[Any]:
        status = self.status()
        role = GaugeMetricFamily("atp_replication_role", "1 for this member's role",
                                 labels=["role"])
        role.add_metric([status.role], 1)
        yield role
        yield GaugeMetricFamily("atp_replication_commit_index",
                                "The number of the last commit this member holds",
                                value=status.commit)
        yield GaugeMetricFamily("atp_replication_term", "The leader's term", value=status.term)
        if status.role == "follower":
            yield GaugeMetricFamily("atp_replication_connected",
                                    "1 while streaming from the leader",
                                    value=int(status.connected))
        commits = GaugeMetricFamily(
            "atp_replication_lag_commits", "Commits a follower has not acknowledged",
            labels=["follower"])
        seconds = GaugeMetricFamily(
            "atp_replication_lag_seconds",
            "Age of the oldest commit a follower has not acknowledged", labels=["follower"])
        for follower in status.followers:
            commits.add_metric([follower.follower_id], follower.lag_commits)
            seconds.add_metric([follower.follower_id], follower.lag_seconds)
        yield commits
        yield seconds
        if status.cluster:
            yield GaugeMetricFamily(
                "atp_cluster_lease_renewal_age_seconds",
                "Seconds since this member last renewed its etcd lease (a leader past its TTL "
                "confirms nothing)", value=status.lease_renewed_seconds_ago)
            yield GaugeMetricFamily("atp_cluster_fenced",
                                    "1 while this member may not confirm writes and knows no "
                                    "leader", value=int(status.fenced))
            yield GaugeMetricFamily("atp_cluster_members", "Members etcd knows alive",
                                    value=len(status.members))


class _SnapshotCollector(Collector):
    def __init__(self, sent: Callable[[], int], received: Callable[[], int]) -> None:
        self.sent = sent
        self.received = received

    def collect(self) -> Iterator[Any]:
        snapshots = CounterMetricFamily(
            "atp_replication_snapshots", "Snapshots sent to followers in full, and installed "
            "from the leader", labels=["direction"])
        snapshots.add_metric(["sent"], self.sent())
        snapshots.add_metric(["received"], self.received())
        yield snapshots


class _LedgerCollector(Collector):
    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Any]:
        ledger = self.writer.ledger
        by_state = GaugeMetricFamily(
            "atp_reservations", "Open reservations (in memory) by state", labels=["state"]
        )
        for state in OPEN_RESERVATION_STATES:
            by_state.add_metric([state.value], ledger.state_counts.get(state, 0))
        yield by_state
        closed = CounterMetricFamily(
            "atp_reservations_closed", "Reservations closed since start, by final state",
            labels=["state"],
        )
        for state in ReservationState:
            if state not in OPEN_RESERVATION_STATES:
                closed.add_metric([state.value], ledger.closed_counts.get(state, 0))
        yield closed
        yield from _retention_metrics(self.writer)
        yield from _storage_metrics(self.writer)
        yield GaugeMetricFamily(
            "atp_at_risk_lines", "Open reservation lines marked at risk",
            value=ledger.at_risk_lines,
        )
        yield CounterMetricFamily(
            "atp_reservations_expired", "HELD reservations expired", value=ledger.expired_total
        )
        yield GaugeMetricFamily(
            "atp_writer_waiting_commands",
            "Commands (mutations) waiting for their batch to be durable",
            value=self.writer.queue_depth,
        )
        yield CounterMetricFamily(
            "atp_commit_batches", "Group commits written", value=self.writer.batches_committed
        )
        yield CounterMetricFamily(
            "atp_follow_apply_cpu_seconds",
            "CPU seconds spent keeping this process's copy of the ledger: storing and applying "
            "its leader's batches (a follower's, and under --gateways each gateway's, summed)",
            value=self.writer.follow_cpu_s,
        )
        yield CounterMetricFamily(
            "atp_housekeeping_failures",
            "Retention purge slices that failed (each is retried later)",
            value=self.writer.housekeeping_failures,
        )
        yield from _clock_steps(self.writer.clock)
        yield from _delivery_metrics(ledger.delivery_tally)


def _retention_metrics(writer: Writer) -> Iterator[Any]:
    """What the retention windows hold now, and what the housekeeper purged."""
    ledger, store, housekeeper = writer.ledger, writer.store, writer.housekeeper
    entries = _entries(store)
    yield GaugeMetricFamily(
        "atp_retained_closed_reservations",
        "Closed reservations still readable (closed retention window)",
        value=entries.get("closed", 0) + len(ledger.closed),
    )
    yield GaugeMetricFamily(
        "atp_idempotency_records", "Idempotency records honoured (idempotency window)",
        value=entries.get("requests", 0) + len(ledger.requests),
    )
    yield GaugeMetricFamily(
        "atp_retained_journal_events", "Journal events kept for Watch replay",
        value=entries.get("journal", 0),
    )
    purged = CounterMetricFamily(
        "atp_retention_purged_records", "Records purged by retention, by kind", labels=["kind"]
    )
    for kind, count in housekeeper.purged.items():
        purged.add_metric([kind], count)
    yield purged
    yield GaugeMetricFamily(
        "atp_retention_slice_longest_seconds",
        "The longest single purge slice since start (it holds back commits that long)",
        value=housekeeper.longest_slice_s,
    )


def _entries(store: Any) -> dict[str, int]:
    info = getattr(store, "environment_info", None)
    if info is None:
        return {}
    try:
        entries: dict[str, int] = info()["entries"]
    except StoreError:
        return {}
    return entries


def _storage_metrics(writer: Writer) -> Iterator[Any]:
    usage, limits = writer.storage.usage, writer.storage.limits
    if usage is not None:
        yield GaugeMetricFamily("atp_map_used_bytes", "Bytes of the LMDB map holding data",
                                value=usage.used)
        yield GaugeMetricFamily("atp_map_size_bytes", "The LMDB map size now (it grows)",
                                value=usage.map_size)
        yield GaugeMetricFamily("atp_data_file_bytes", "Bytes the data file takes on disk",
                                value=usage.file_allocated)
    yield GaugeMetricFamily("atp_max_data_bytes", "The cap on the data (--max-data-mb)",
                            value=limits.max_bytes)
    yield GaugeMetricFamily(
        "atp_storage_full", "1 while writes that add data are refused (STORAGE_FULL)",
        value=1 if writer.storage.full_reason is not None else 0,
    )


def _delivery_metrics(tally: DeliveryTally) -> Iterator[Any]:
    """Deliveries recorded (RecordDelivery) and the perfect-order measures they met, by
    channel (the first limits.metric_channels_max distinct ones; later ones as "other")."""
    recorded = CounterMetricFamily(
        "atp_deliveries_recorded", "Delivery outcomes recorded since start (corrections "
        "included), by the reservation's channel", labels=["channel"])
    for channel, count in sorted(tally.recorded.items()):
        recorded.add_metric([channel], count)
    yield recorded
    met = CounterMetricFamily(
        "atp_delivery_measures_met", "Recorded deliveries that met a perfect-order measure "
        "(on_time, in_full, damage_free, documentation_accurate, perfect: all four), by channel",
        labels=["channel", "measure"])
    for (channel, measure), count in sorted(tally.met.items()):
        met.add_metric([channel, measure], count)
    yield met


def _clock_steps(clock: object) -> Iterator[Any]:
    if not isinstance(clock, SteadyClock):
        return
    steps = CounterMetricFamily(
        "atp_clock_steps", "Steps of the wall clock: back (the engine's clock held its course) "
        "or forward beyond --clock-step-max (followed)", labels=["direction"],
    )
    steps.add_metric(["backward"], clock.backward_steps)
    steps.add_metric(["forward"], clock.forward_steps)
    yield steps


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Counts RPCs by method and final status code, and times the unary ones (a stream's
    duration says nothing about latency)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._measured = Rebuilds(self._measuring)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._measured.of(handler_call_details.method, handler)

    def _measuring(self, full_method: str, handler: grpc.RpcMethodHandler
                   ) -> grpc.RpcMethodHandler:
        method = full_method.rsplit("/", 1)[-1]

        def measured(kind: str, behaviour: Behaviour) -> Behaviour:
            if kind == "unary_unary":
                return self._timed(method, behaviour)
            return self._counted_stream(method, behaviour) if kind.endswith("stream") else behaviour

        return rebuilt(handler, measured)

    def _timed(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        counter, latency = self.metrics.rpcs, self.metrics.rpc_latency.labels(method)

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await behaviour(request, context)
            except BaseException:
                code = _final_code(context)
                raise
            finally:
                latency.observe(time.perf_counter() - started)
                counter.labels(method, code).inc()

        return timed

    def _counted_stream(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        counter = self.metrics.rpcs

        async def counted(request: Any, context: grpc.aio.ServicerContext) -> None:
            code = "OK"
            try:
                if not await responses_of(behaviour, request, context):
                    code = "CANCELLED"  # the client went away
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"  # the client went away
                raise
            except BaseException:
                code = _final_code(context)
                raise
            finally:
                counter.labels(method, code).inc()

        return counted


def _final_code(context: grpc.aio.ServicerContext) -> str:
    """The status code a failed call ends with (UNKNOWN when it raised without one)."""
    status = context.code()
    return status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
