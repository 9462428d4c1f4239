"""Composition root: config -> store -> ledger -> writer -> servicers -> health/reflection."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from atp import limits
from atp.cluster.etcd import EtcdClient
from atp.cluster.member import Member, Timing
from atp.engine.clock import SteadyClock
from atp.engine.events import EventHub
from atp.engine.housekeeping import Retention
from atp.engine.replication import ReplicationLog
from atp.engine.storage import StorageLimits
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig, commands, gateway_plans
from atp.persistence import codec, ledger_from_records
from atp.persistence.archive import archive_of
from atp.server.admission import AdmissionGate, backlog_options
from atp.server.allocations import AllocationsServicer
from atp.server.authorization import Authorization, TrustedPrincipal
from atp.server.cluster_node import ClusterNode
from atp.server.command_link import CommandLink, CommandLinkServer
from atp.server.decoding import GuardingRegistrar
from atp.server.gateway import CommitBoard, GatewayInterceptor, is_gateway, publish_commits
from atp.server.health import CountedHealthServicer
from atp.server.metrics import Metrics, MetricsInterceptor
from atp.server.replication import Follower, ReplicationServicer, replication_status
from atp.server.server_info import ServerServicer, ServerSettings, authentication_mode
from atp.server.servicers import (
    AvailabilityServicer,
    EventsServicer,
    InventoryServicer,
    ReservationsServicer,
)
from atp.server.summed_metrics import serve_page
from atp.server.writer_health import GatewayHealthServicer
from atp.store import LmdbStore, MemoryStore, Store, StoreError
from atp.tls import CertificateReloader, ServerTls, TlsOptions
from atp.v1 import (
    allocation_pb2,
    allocation_pb2_grpc,
    availability_pb2,
    availability_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
)

log = logging.getLogger("atp.server")

GC_FREEZE_INTERVAL_S = 1.0
# How often the TLS files are looked at for a change even when no connection comes in (each
# new gRPC connection looks too): a rotated certificate reaches /metrics and the log by then.
TLS_CHECK_INTERVAL_S = 5.0
# A full collection happens once this many young-generation collections have run in a row
# without one: never, in practice. Set as the middle generation's threshold too, it turns
# that generation's automatic collections off as well.
AUTOMATIC_FULL_COLLECTIONS_OFF = 2**30
AUTOMATIC_MIDDLE_COLLECTIONS_OFF = AUTOMATIC_FULL_COLLECTIONS_OFF

# A health "service" that says whether writes that add data are accepted (not while storage
# is full).
WRITES_HEALTH_NAME = "atp.v1.Writes"

SERVICE_NAMES = (
    inventory_pb2.DESCRIPTOR.services_by_name["Inventory"].full_name,
    availability_pb2.DESCRIPTOR.services_by_name["Availability"].full_name,
    reservations_pb2.DESCRIPTOR.services_by_name["Reservations"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
    server_pb2.DESCRIPTOR.services_by_name["Server"].full_name,
    allocation_pb2.DESCRIPTOR.services_by_name["Allocations"].full_name,
)


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    # None keeps everything in memory (tests only): nothing survives a restart.
    data_dir: str | None = "./data"
    sync: bool = True
    # The LMDB map at start, grown as the data nears it up to max_data_bytes; past that
    # (less `StorageLimits.headroom_bytes`) writes that add data are refused STORAGE_FULL.
    map_size_bytes: int = 1 << 30
    max_data_bytes: int = 16 << 30
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    grace_seconds: float = 5.0
    # Seconds of journal kept for Watch replay (0: no age limit), and the newest events kept
    # whatever their age (0: no count limit). The closed-retention and idempotency windows
    # are in `ledger` (the ledger honours them; the housekeeper purges by them).
    journal_retention_s: float = 7 * 86400.0
    journal_retention_events: int = 0
    # HOST:PORT for the Prometheus /metrics endpoint; None serves no metrics.
    metrics_listen: str | None = None
    clock: Callable[[], float] = time.time
    # The monotonic clock that measures elapsed time while the wall clock is behind (after a
    # step back); None: time.monotonic with the real wall clock, none with an injected one.
    monotonic: Callable[[], float] | None = None
    # A forward step of the wall clock larger than this is logged as an error and counted.
    clock_step_max_s: float = 60.0
    # Unary calls in the server at once; more are refused with RESOURCE_EXHAUSTED + RetryInfo.
    concurrent_rpcs_max: int = limits.concurrent_rpcs_max
    # HOST:PORT of the leader to follow; "" leads (takes writes, and serves Replicate).
    follow: str = ""
    # HOST:PORT others reach this member at (a follower's name to its leader).
    advertise: str = ""
    # Followers that must have stored a batch before its writes are answered, and how long
    # a write waits for them before UNAVAILABLE.
    sync_replicas: int = 0
    sync_timeout_s: float = 10.0
    # A cluster member (`--cluster`): its cluster's name, etcd's endpoints (HOST:PORT,...),
    # the TTL of its lease in whole seconds, and how many commits behind the last leader an
    # asynchronous follower may be and still take over.
    cluster: str = ""
    etcd: str = ""
    lease_ttl_s: int = 10
    max_lag_on_failover: int = 1000
    # Committed batches a leader keeps for followers to stream (a follower further behind
    # takes a snapshot instead).
    replication_log_batches: int = limits.replication_log_batches_max
    # Events buffered per Watch stream before a slow reader is ended (and resumes).
    watch_queue_events: int = limits.watch_queue_events_max
    # Who may do what (server/authorization.py): the policy file ("" serves every caller,
    # as before), and the file of token hashes ("" accepts client certificates only).
    auth_policy: str = ""
    auth_tokens: str = ""
    # The bearer token this member presents to its leader (Replicate, Snapshot), for a
    # leader run with --auth-policy; "" presents none.
    peer_token: str = ""
    # Transport security. tls: serve TLS with these files (mutual TLS when it names a client
    # CA); None: plaintext. peer_tls: how a follower reaches its leader (its own certificate,
    # the CA to verify the leader against); None: plaintext. metrics_tls: /metrics over HTTPS
    # with `tls`'s files. etcd_tls: how the cluster's etcd is reached; None: plaintext.
    tls: ServerTls | None = None
    peer_tls: TlsOptions | None = None
    metrics_tls: bool = False
    etcd_tls: TlsOptions | None = None
    # A gateway process of `atpd --gateways N` (atp/supervisor.py): the writer's private
    # target (unix:PATH) that calls other than reads are forwarded to, with `follow` the same
    # target and an in-memory store; "" is any other atpd. reuse_port: bind the listen
    # address with SO_REUSEPORT (the gateways share it); follower_id: this member's name to
    # its leader ("": its advertised address).
    gateway_of: str = ""
    # The journal events a gateway's copy keeps (it keeps no archive: MemoryStore.live_copy).
    gateway_journal_events: int = limits.gateway_journal_events
    # The file the writer of `atpd --gateways` publishes its commit in, for its gateways'
    # reads (server/gateway.py CommitBoard); "" for none (a gateway then asks the writer).
    commit_file: str = ""
    # The Unix socket of the command link (server/command_link.py): the writer of `atpd
    # --gateways` serves it, and its gateways send the writes they decoded over it; "" for
    # none (a gateway then forwards writes to the writer as gRPC calls).
    command_link: str = ""
    reuse_port: bool = False
    follower_id: str = ""
    # The writer of `atpd --gateways N`: `listen` is its private Unix socket, served in
    # plaintext to its gateways only (a 0700 directory); `tls` and `auth_policy` describe the
    # public port its gateways serve (GetServerInfo reports them; `tls` also serves this
    # process's own metrics port), and the caller of each call is the principal its gateway
    # names (authorization's TrustedPrincipal). Gateways' acknowledgements never count
    # towards `sync_replicas`.
    behind_gateways: bool = False
    # How many gateways `atpd --gateways N` runs (a child's own view of the deployment, which
    # GetServerInfo reports); 0 for one process.
    gateways: int = 0
    # A child of `atpd --gateways N` with metrics: the Unix socket its supervisor reads its
    # metrics page from, to serve the sum of its processes (server/summed_metrics.py).
    metrics_socket: str = ""


class AtpServer:
    """A running atpd: the gRPC server, its writer and its store."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.stopped = asyncio.Event()
        self.fatal_error: BaseException | None = None
        # Before the store: files that do not load stop atpd (TlsFileError) with nothing open.
        self.tls = CertificateReloader(config.tls) if config.tls is not None else None
        self.store: Store = open_store(config)
        discard_interrupted_restore(self.store,
                                    following=bool(config.follow or config.cluster))
        self.clock = steady_clock(config, last_event_time(self.store))
        started = time.monotonic()
        # A gateway's copy never expires anything: the writer does (load_ledger).
        expires = not config.gateway_of
        ledger = load_ledger(self.store, config.ledger, self.clock(), expires)
        self.writer = Writer(
            ledger, self.store, clock=self.clock, on_fatal=self._on_fatal,
            rebuild_ledger=lambda: load_ledger(self.store, config.ledger, self.clock(),
                                               expires),
            storage_limits=StorageLimits(config.max_data_bytes),
            retention=Retention(
                closed_s=config.ledger.closed_retention_s,
                idempotency_s=config.ledger.idempotency_window_s,
                journal_s=config.journal_retention_s,
                journal_events=config.journal_retention_events,
            ),
        )
        self.events = EventHub(self.store, queue_capacity=config.watch_queue_events)
        self.writer.on_durable_events = self.events.publish
        self.replication = ReplicationLog(self.writer.commit_index,
                                          batches_max=config.replication_log_batches)
        self.writer.on_restore_begun = self.events.restore_begun
        self.writer.on_snapshot_installed = self._snapshot_installed
        self.writer.on_durable_batch = self.replication.append
        self.writer.sync_replicas = self.replication.sync_replicas = config.sync_replicas
        self.writer.sync_timeout_s = config.sync_timeout_s
        self.replication.on_replicated = self.writer.replicas_hold
        if config.behind_gateways:  # its gateways follow it too, but replicate nothing
            self.replication.counts_as_replica = lambda follower_id: not is_gateway(follower_id)
        self.follower: Follower | None = None
        self.member: Member | None = None
        address = config.advertise or config.listen
        if config.cluster:  # a candidate until the member loop finds or becomes the leader
            self.writer.fenced = True
            self.follower = Follower(self.writer, "", address, tls=config.peer_tls)
            node = ClusterNode(self.writer, self.replication, self.follower, address)
            etcd = EtcdClient(config.etcd, tls=config.etcd_tls)
            self.member = Member(etcd, config.cluster, node,
                                 Timing(config.lease_ttl_s), config.max_lag_on_failover)
        elif config.follow:
            self.writer.leader_address = config.follow
            self.follower = Follower(self.writer, config.follow, config.follower_id or address,
                                     tls=config.peer_tls)
        if self.follower is not None and config.peer_token:
            self.follower.metadata = (("authorization", f"Bearer {config.peer_token}"),)
        self.load_seconds = time.monotonic() - started
        # The loaded ledger lives as long as the process: keep the cyclic collector from
        # rescanning its millions of objects on every full collection (latency spikes).
        gc.freeze()
        health_names = ("", *SERVICE_NAMES, WRITES_HEALTH_NAME)
        # A gateway's WRITES_HEALTH_NAME is its writer's (its own store is a memory copy).
        self.gateway_health = (GatewayHealthServicer(health_names, config.gateway_of,
                                                     (WRITES_HEALTH_NAME,))
                               if config.gateway_of else None)
        self.health = self.gateway_health or CountedHealthServicer(health_names)
        self.admission = AdmissionGate(config.concurrent_rpcs_max, SERVICE_NAMES)
        self.metrics = (Metrics(self.writer, self.admission)
                        if config.metrics_listen or config.metrics_socket else None)
        interceptors: list[grpc.aio.ServerInterceptor] = (
            [MetricsInterceptor(self.metrics)] if self.metrics else [])
        if config.auth_policy:
            interceptors.append(TrustedPrincipal() if config.behind_gateways
                                else Authorization(config.auth_policy, config.auth_tokens))
        # A gateway's forwarding innermost: the gate and the metrics see its calls too.
        self.command_link = (CommandLink(config.command_link, offer=self._offer_plan,
                                         follower_id=config.follower_id or config.listen)
                             if config.gateway_of and config.command_link else None)
        if self.follower is not None and self.command_link is not None:
            # A gateway's copy is fed over its command link (gRPC for snapshots only).
            self.follower.feed = self.command_link.feed
        self.gateway = (GatewayInterceptor(self.writer, config.gateway_of, config.commit_file,
                                           applies_writes=self.command_link is not None)
                        if config.gateway_of else None)
        self.command_link_server: CommandLinkServer | None = None
        if not config.gateway_of:  # the writer of `--gateways N`
            if config.commit_file:
                publish_commits(self.writer, CommitBoard(config.commit_file, writable=True))
            if config.command_link:
                self.command_link_server = CommandLinkServer(self.writer, config.command_link,
                                                             log=self.replication)
        self.server = grpc.aio.server(
            # The gate innermost: the metrics interceptor counts its refusals (and the
            # authorization's) like any answer.
            interceptors=[*interceptors, self.admission,
                          *([self.gateway] if self.gateway is not None else [])],
            options=[
                ("grpc.max_receive_message_length", limits.message_bytes_max),
                ("grpc.so_reuseport", 1 if config.reuse_port else 0),
                *backlog_options(limits.rpc_backlog_max),
            ]
        )
        if self.metrics is not None:
            self.metrics.watch_health(self.health)
            self.metrics.watch_replication(
                lambda: replication_status(self.writer, self.replication, self.follower,
                                           self._describe_cluster))
            self.metrics.watch_snapshots(lambda: self.replication.snapshots_sent,
                                         lambda: self.writer.snapshots_installed)
        self._add_services()
        try:
            if self.tls is not None and not config.behind_gateways:
                self.port = self.server.add_secure_port(config.listen, self.tls.credentials())
            else:
                self.port = self.server.add_insecure_port(config.listen)
        except RuntimeError:  # grpc's "Failed to bind", with a hint about GRPC_VERBOSITY
            self.port = 0
        if self.port == 0:
            self.store.close()
            raise OSError(f"cannot listen on {config.listen}: the address is in use or not "
                          "one of this machine's")
        host, port = (config.advertise or config.listen).rsplit(":", 1)
        if port == "0":  # the port picked for us: name it in the writes' metadata
            for servicer in self._ledger_servicers:
                servicer.address = f"{host}:{self.port}"

    def _offer_plan(self, command: commands.Command) -> commands.Command:
        """A gateway's command with the plan made on its copy, as it is now."""
        return gateway_plans.offer(self.writer.ledger, command, self.writer.clock,
                                   self.writer.commit_index)

    def _add_services(self) -> None:
        # Our services' handlers answer undecodable request bytes as INVALID_ARGUMENT.
        ours = GuardingRegistrar(self.server)
        address = self.config.advertise or self.config.listen
        self._ledger_servicers = (InventoryServicer(self.writer, address),
                                  AvailabilityServicer(self.writer, address),
                                  ReservationsServicer(self.writer, address),
                                  AllocationsServicer(self.writer, address))
        inventory, availability, reservations, allocations = self._ledger_servicers
        if self.command_link is not None:  # a gateway's writes go to the writer process
            for servicer in self._ledger_servicers:
                servicer.mutations = self.command_link
        inventory_pb2_grpc.add_InventoryServicer_to_server(inventory, ours)
        availability_pb2_grpc.add_AvailabilityServicer_to_server(availability, ours)
        reservations_pb2_grpc.add_ReservationsServicer_to_server(reservations, ours)
        allocation_pb2_grpc.add_AllocationsServicer_to_server(allocations, ours)
        events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(self.events), ours)
        replication_pb2_grpc.add_ReplicationServicer_to_server(
            ReplicationServicer(self.replication, self.writer, self.follower,
                                self._describe_cluster), ours)
        server_pb2_grpc.add_ServerServicer_to_server(
            ServerServicer(self.writer, self.replication, self._settings()), ours)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.server)

    def _settings(self) -> ServerSettings:
        """What GetServerInfo reports of this server's configuration."""
        config = self.config
        client_ca = config.tls is not None and config.tls.client_ca is not None
        return ServerSettings(
            default_ttl_seconds=config.ledger.default_ttl_seconds,
            safety_stock_priority_min=config.ledger.safety_stock_priority_min,
            concurrent_rpcs_max=config.concurrent_rpcs_max,
            journal_retention_s=config.journal_retention_s,
            journal_retention_events=config.journal_retention_events,
            closed_retention_s=config.ledger.closed_retention_s,
            idempotency_window_s=config.ledger.idempotency_window_s,
            cluster=config.cluster,
            authentication=authentication_mode(config.auth_policy, config.auth_tokens, client_ca),
            tls=config.tls is not None,
            client_certificates_required=client_ca,
            start_time=self.clock(),
            gateways=config.gateways,
        )

    async def start(self) -> None:
        # Metrics first: a metrics port that cannot be bound stops atpd before anything runs.
        self._serve_metrics()
        self.writer.on_storage_state = self._storage_state_changed
        self.writer.start()
        self._freezer = asyncio.create_task(freeze_survivors())
        self._tls_watch = (asyncio.create_task(watch_tls_files(self.tls))
                           if self.tls is not None else None)
        await self.writer.check_storage()  # grows the map, or starts refusing, as data needs
        if self.writer.leads:
            # Expire what fell due while the server was down before taking any call.
            await self.writer.expire_backlog()
        if self.command_link_server is not None:
            await self.command_link_server.start()
        await self.server.start()
        if self.member is not None:
            self.member.start()
        elif self.follower is not None:
            self.follower.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._storage_state_changed(self.writer.storage.full_reason is None)
        if self.gateway_health is not None:
            await self.gateway_health.follow_writer()
        # A writer of `--gateways N` listens on its private Unix socket (grpc calls its port 1).
        where = (self.config.listen if self.config.listen.startswith("unix:")
                 else f"port {self.port}")
        log.info(
            "atpd serving on %s (%d reservations, %d positions loaded in %.2fs); %s",
            where, len(self.writer.ledger.reservations), len(self.writer.ledger.positions),
            self.load_seconds, self._metrics_where(),
        )

    def _metrics_where(self) -> str:
        """Where metrics are served, for the start-up line (operators look there first)."""
        if not self.config.metrics_listen:
            return "no metrics (--metrics-port 0)"
        scheme = "https" if self.tls is not None and self.config.metrics_tls else "http"
        return f"metrics at {scheme}://{self.config.metrics_listen}/metrics"

    def _serve_metrics(self) -> None:
        if self.metrics is not None and self.config.metrics_socket:
            serve_page(self.metrics.registry, self.config.metrics_socket)
        if self.metrics is None or not self.config.metrics_listen:
            return
        host, port = self.config.metrics_listen.rsplit(":", 1)
        tls = self.tls.tls if self.tls is not None and self.config.metrics_tls else None
        try:
            self.metrics.serve(host.strip("[]"), int(port), tls)  # [::1] is written for IPv6
            if tls is not None and self.tls is not None:
                self.tls.on_reload.append(self.metrics.reload_tls)
        except OSError as error:
            self.store.close()
            raise OSError(f"cannot serve metrics on {self.config.metrics_listen}: "
                          f"{bind_failure(error)}") from error

    async def stop(self) -> None:
        """Health NOT_SERVING, drain calls, final commit, close the store."""
        if self.stopped.is_set():
            return
        if self.gateway_health is not None:
            await self.gateway_health.close()
        await self.health.enter_graceful_shutdown()
        if self.member is None and self.follower is not None:
            await self.follower.stop()
        self.events.close()
        self._ledger_servicers[2].end_streams()
        if self.gateway is not None:
            self.gateway.end_streams()
        await self.server.stop(self.config.grace_seconds)
        if self.gateway is not None:
            await self.gateway.close()
        if self.command_link is not None:
            await self.command_link.close()
        if self.member is not None:  # calls drained: resign, then stop following
            await self.member.stop()
            await self.member.etcd.close()
            if self.follower is not None:
                await self.follower.stop()
        await self.writer.close()
        if self.command_link_server is not None:  # after the final commit has answered
            await self.command_link_server.close()
        self._freezer.cancel()
        if self._tls_watch is not None:
            self._tls_watch.cancel()
        self.store.close()
        self.stopped.set()

    def _describe_cluster(self, status: replication_pb2.ReplicationStatus) -> None:
        """What the member loop last learned of the cluster, for Status and metrics."""
        if self.member is None:
            return
        view = self.member.view
        status.cluster = view.name
        status.sync_standbys.extend(view.sync_standbys)
        if view.renewed_at is not None:
            status.lease_renewed_seconds_ago = time.monotonic() - view.renewed_at
        now = time.time()
        for record in view.members:
            status.members.add(
                address=record.address, role=record.role, commit=record.commit,
                term=record.term, published_seconds_ago=max(0.0, now - record.published),
                eligible=record.address in view.eligible)
    def _snapshot_installed(self, commit: int) -> None:
        """Memory, store and journal now hold the leader's snapshot: what follows them too."""
        self.events.restore_finished()
        self.replication.restart_at(commit)

    def _storage_state_changed(self, has_room: bool) -> None:
        """Health of WRITES_HEALTH_NAME: NOT_SERVING while storage is full (reads, and the
        overall status, stay SERVING: the server still answers and ends demand). A gateway
        follows its writer's instead (`start`)."""
        if self.gateway_health is not None:
            return
        status = health_pb2.HealthCheckResponse
        asyncio.get_running_loop().create_task(self.health.set(
            WRITES_HEALTH_NAME, status.SERVING if has_room else status.NOT_SERVING))

    def _on_fatal(self, error: BaseException) -> None:
        self.fatal_error = error
        asyncio.get_running_loop().create_task(self.stop())


def load_ledger(store: Store, config: LedgerConfig, now: float, expires: bool = True) -> Ledger:
    """The ledger the store holds (at start, and after a snapshot is installed). `expires`
    False: it keeps no expiry queue (state.NoExpiryQueue), as a gateway's copy, which never
    expires anything itself."""
    ledger = ledger_from_records(store.iter_records, store.last_sequence(), config, now,
                                 expires)
    ledger.archive = archive_of(store)
    store.loaded()
    return ledger


def discard_interrupted_restore(store: Store, following: bool) -> None:
    """A snapshot restore that never finished (the process was killed in the middle) left a
    store that is neither what it held before nor the snapshot: it is never served. It is
    emptied again, so that it holds commit 0 and its follower takes a new snapshot; a leader
    has nowhere to take one from, and does not start."""
    if not store.restore_incomplete():
        return
    log.warning("the data directory holds a snapshot restore that was interrupted: it is "
                "emptied, and a new snapshot will be taken from the leader")
    store.begin_restore()
    if not following:
        store.close()
        raise StoreError("the data directory held an interrupted snapshot restore (now "
                         "emptied): start this member with --follow LEADER to take a new "
                         "snapshot, or give it an empty data directory to lead a new cluster")


def steady_clock(config: ServerConfig, floor: float) -> SteadyClock:
    """The engine's clock; with the real wall clock it also starts no earlier than `floor`
    (the last instant the ledger used), so that a clock stepped back while atpd was down
    cannot date new demand before what is already on the books."""
    monotonic = config.monotonic
    if monotonic is None and config.clock is time.time:
        monotonic = time.monotonic
    return SteadyClock(config.clock, monotonic, forward_step_max_s=config.clock_step_max_s,
                       floor=floor if monotonic is not None else 0.0)


def last_event_time(store: Store) -> float:
    """The instant of the newest journal event, 0.0 if none is retained."""
    last = store.last_sequence()
    newest = store.read_journal(last - 1, 1) if last else []
    return codec.decode_event(newest[0][1]).time if newest else 0.0


async def watch_tls_files(reloader: CertificateReloader,
                          interval_s: float = TLS_CHECK_INTERVAL_S) -> None:
    """Looks at the TLS files every interval: gRPC takes a change on its next connection, the
    metrics server and the log at once."""
    while True:
        await asyncio.sleep(interval_s)
        reloader.check()


def bind_failure(error: OSError) -> str:
    """Why a port could not be bound, in words a user can act on."""
    reasons = {
        errno.EADDRINUSE: "the address is in use",
        errno.EADDRNOTAVAIL: "the address is not one of this machine's",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }
    return reasons.get(error.errno or 0, error.strerror or str(error))


def open_store(config: ServerConfig) -> Store:
    if config.data_dir is None and not config.gateway_of:
        return MemoryStore()
    if config.data_dir is None:
        # A gateway's copy keeps live state and a tail of the journal, not the retention
        # windows' worth of what ended: its memory stays bounded, the writer answers the rest.
        return MemoryStore.live_copy(config.gateway_journal_events)
    return LmdbStore(config.data_dir, map_size=min(config.map_size_bytes, config.max_data_bytes),
                     sync=config.sync)


async def freeze_survivors(interval_s: float = GC_FREEZE_INTERVAL_S) -> None:
    """Moves long-lived objects out of the cyclic collector's reach every interval.

    The ledger's records hold no reference cycles (they are freed by reference counting),
    but full collections would rescan all of them: pauses that grow with the ledger and show
    up as p99 latency. Each freeze is preceded by a collection of what is not frozen yet
    (the objects made since the last freeze), which frees the dead cycles calls leave behind
    (asyncio and grpc make a few per call): frozen, they would never be freed, a leak of
    ~40 objects/s at 3,000 calls/s. Every second keeps that collection short.

    Full collections come only from here while it runs: the automatic ones in between (two or
    three a second under ReserveBatch, ~40 ms each) would rescan the same unfrozen objects.
    So do collections of the middle generation: each would rescan what survived a young
    collection, which this collection scans again before the freeze (a cycle there waits
    for it, a second at most). Measured in the writer at full speed (bench.writer_cap, the
    collector's CPU read with gc.callbacks): 0.67-0.69 s of collections over ~85,000
    reserves with them, 0.42-0.48 s without; the young generation's stay (a larger young
    threshold cost more: its collections outgrow the caches).
    """
    previous = gc.get_threshold()
    gc.set_threshold(previous[0], AUTOMATIC_MIDDLE_COLLECTIONS_OFF,
                     AUTOMATIC_FULL_COLLECTIONS_OFF)
    try:
        while True:
            await asyncio.sleep(interval_s)
            gc.collect()
            gc.freeze()
    finally:
        gc.set_threshold(*previous)
