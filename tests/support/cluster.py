"""A real atpd cluster on etcd, for the failover tests and bench: one etcd, N members.

    with Cluster(tmp_path, size=3, sync_replicas=1) as cluster:
        leader = cluster.wait_for_leader()
        killed = cluster.kill_leader()           # kill -9; killed.killed_at is time.time()
        new = cluster.wait_for_leader(exclude=[killed])
        killed.start()                           # the same port and data: it must follow

Each member is `python -m atp.daemon --cluster NAME --etcd ENDPOINT --listen A --advertise A
--data-dir DIR --sync-replicas N --lease-ttl 3s` with A = 127.0.0.1:PORT, the port chosen up
front (members and clients must know each other's addresses before any starts), so a
restarted member comes back at the same address. A member counts as started once it says it
listens and answers Replication/Status (Health is not waited for: a candidate may not serve).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atp.v1 import replication_pb2, replication_pb2_grpc
from tests.integration.helpers import wait_for
from tests.support.atpd import AtpdProcess, free_port
from tests.support.etcd import EtcdProcess, etcd_binary

# Reconnect at once to a member that was down (gRPC's default backoff grows to minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
LEADER, FOLLOWER = "leader", "follower"
Status = replication_pb2.ReplicationStatus
StubT = TypeVar("StubT")
# Failures after which a write may go again to the (new) leader: nothing was applied, or the
# outcome is unknown and the write is idempotent by its id.
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
NOT_LEADER = "NOT_LEADER"


class Member(AtpdProcess):
    """One cluster member at a fixed address; restartable there, pausable (SIGSTOP)."""

    def __init__(self, name: str, work_dir: Path, port: int, cluster_args: Sequence[str],
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.address = f"127.0.0.1:{port}"
        # AtpdProcess puts "--listen 127.0.0.1:0" first; the later --listen wins (argparse).
        super().__init__(work_dir / name, "--listen", self.address, "--advertise",
                         self.address, *cluster_args, env=env)
        self.paused = False
        self.killed_at: float | None = None
        self.started_at: float | None = None
        self._channel: grpc.Channel | None = None

    def __repr__(self) -> str:
        return f"Member({self.name} {self.address} pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 30.0) -> Self:
        super().start(timeout_s)
        assert self.target == self.address, f"{self.name} listens on {self.target}"
        self.started_at = time.time()
        self.killed_at = None
        return self

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        """Until Replication/Status answers (whatever the role)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.try_status(timeout_s=1.0) is not None:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}; see "
                                   f"{self.log_path}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never answered Replication/Status; see "
                                   f"{self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)

    # -- Replication/Status ----------------------------------------------------------------

    def channel(self) -> grpc.Channel:
        """A new channel to this member (the caller closes it)."""
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def stub(self, stub_type: Callable[[grpc.Channel], StubT]) -> StubT:
        """A stub on this member's own channel (kept open, reconnecting after a restart)."""
        if self._channel is None:
            self._channel = self.channel()
        return stub_type(self._channel)

    def _status_stub(self) -> replication_pb2_grpc.ReplicationStub:
        return self.stub(replication_pb2_grpc.ReplicationStub)

    def status(self, timeout_s: float = 2.0) -> Status:
        reply: Status = self._status_stub().Status(
            replication_pb2.ReplicationStatusRequest(), timeout=timeout_s)
        return reply

    def try_status(self, timeout_s: float = 1.0) -> Status | None:
        """The member's Status, or None when it does not answer (down, paused, starting)."""
        try:
            return self.status(timeout_s)
        except grpc.RpcError:
            return None

    def status_future(self, timeout_s: float) -> Any:
        return self._status_stub().Status.future(
            replication_pb2.ReplicationStatusRequest(), timeout=timeout_s)

    # -- signals ---------------------------------------------------------------------------

    def kill(self) -> None:
        """kill -9 (a paused member too); `killed_at` is the time.time() just before."""
        if self.process is None:
            return
        self.killed_at = time.time()
        self.process.kill()
        self.process.wait(20)
        self.paused = False
        self._closed()

    def pause(self) -> float:
        """SIGSTOP: the process stays, silent (a long GC pause, a frozen VM). The time."""
        assert self.process is not None
        at = time.time()
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True
        return at

    def resume(self) -> float:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False
        return time.time()

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.paused and self.process is not None:
            self.resume()
        return super().stop(timeout_s)

    def terminate(self) -> None:
        """SIGTERM without waiting (a cluster stops its members together)."""
        if self.process is not None and self.process.poll() is None:
            if self.paused:
                self.resume()
            self.process.send_signal(signal.SIGTERM)

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call ("" without one)."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        return ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def describe(status: Status | None) -> str:
    if status is None:
        return "no answer"
    parts = [f"role={status.role}", f"term={status.term}", f"commit={status.commit}"]
    if status.leader:
        parts.append(f"leader={status.leader} connected={status.connected}")
    if status.fenced:
        parts.append("FENCED")
    if status.sync_standbys:
        parts.append(f"standbys={list(status.sync_standbys)}")
    if status.followers:
        parts.append("followers=" + ",".join(
            f"{f.follower_id}:{f.acknowledged_commit}{'' if f.connected else '(gone)'}"
            for f in status.followers))
    parts.append(f"lease_age={status.lease_renewed_seconds_ago:.2f}")
    return " ".join(parts)


class Cluster:
    """One etcd and `size` atpd members of cluster `name`, all on loopback."""

    def __init__(
        self,
        work_dir: Path,
        size: int = 3,
        *,
        sync_replicas: int = 1,
        lease_ttl: str = "3s",
        name: str = "atp-test",
        extra_args: Sequence[str] = (),
        log_level: str = "INFO",
        env: dict[str, str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.sync_replicas = sync_replicas
        self.lease_ttl = lease_ttl
        self.lease_ttl_s = float(lease_ttl.rstrip("s"))
        self.etcd = EtcdProcess(work_dir, etcd_binary(), name=f"{name}-etcd")
        ports = self._distinct_ports(size, {self.etcd.client_port, self.etcd.peer_port})
        args = ["--cluster", name, "--etcd", self.etcd.endpoint,
                "--sync-replicas", str(sync_replicas), "--lease-ttl", lease_ttl,
                "--log-level", log_level, *extra_args]
        self.members = [Member(f"m{index}", work_dir, port, args, env)
                        for index, port in enumerate(ports)]

    @staticmethod
    def _distinct_ports(count: int, taken: set[int]) -> list[int]:
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port not in taken and port not in ports:
                ports.append(port)
        return ports

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> Self:
        try:
            self.etcd.start()
            # Every member's process first, then wait for each: they start side by side.
            with concurrent.futures.ThreadPoolExecutor(len(self.members)) as pool:
                for done in [pool.submit(member.start, timeout_s) for member in self.members]:
                    done.result()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Every member SIGTERMed together (a paused one continued first), killed after
        10 s; then etcd. Never raises."""
        for member in self.members:
            member.close_channel()
            try:
                member.terminate()
            except OSError:
                pass
        deadline = time.monotonic() + 10.0
        for member in self.members:
            if member.process is None:
                continue
            try:
                member.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                member.kill()
            except (OSError, subprocess.SubprocessError):
                pass
        try:
            self.etcd.stop()
        except (OSError, subprocess.SubprocessError):
            self.etcd.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading it ------------------------------------------------------------------------

    def members_target(self, members: Iterable[Member] | None = None) -> str:
        """"a,b,c": every member's address, for a multi-target client."""
        return ",".join(member.address for member in (members or self.members))

    def member(self, address: str) -> Member:
        for member in self.members:
            if member.address == address or member.name == address:
                return member
        raise KeyError(address)

    def status(self, member: Member | str, timeout_s: float = 2.0) -> Status:
        return (member if isinstance(member, Member) else self.member(member)).status(timeout_s)

    def statuses(self, exclude: Iterable[Member | str] = (),
                 timeout_s: float = 1.0) -> dict[str, Status | None]:
        """Status of every running, unpaused, not excluded member, asked at once (None: it did
        not answer)."""
        skip = {m.address if isinstance(m, Member) else m for m in exclude}
        asked = {member.address: member.status_future(timeout_s) for member in self.members
                 if member.running and not member.paused and member.address not in skip}
        answers: dict[str, Status | None] = {}
        for address, future in asked.items():
            try:
                answers[address] = future.result()
            except grpc.RpcError:
                answers[address] = None
        return answers

    def agreed_leader(self, statuses: dict[str, Status | None]) -> str | None:
        """The one member that says it leads (unfenced) and that every other one answering
        follows; None while there is no such member or one has not answered."""
        leaders = [address for address, status in statuses.items()
                   if status is not None and status.role == LEADER and not status.fenced]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        for address, status in statuses.items():
            if address == leader:
                continue
            if status is None or status.role != FOLLOWER or status.leader != leader:
                return None
        return leader

    def wait_for_leader(self, timeout_s: float = 30.0,
                        exclude: Iterable[Member | str] = ()) -> Member:
        """The member whose Status says leader and which all the others (running, not
        paused, not excluded) follow; polls every 50 ms until `timeout_s`."""
        exclude = list(exclude)
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = self.statuses(exclude)
            leader = self.agreed_leader(statuses)
            if leader is not None:
                return self.member(leader)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no leader that every member follows within {timeout_s:g} s:\n"
                    + self.describe(statuses))
            time.sleep(0.05)

    def kill_leader(self, timeout_s: float = 30.0) -> Member:
        """kill -9 the current leader; it is returned, `killed_at` set (time.time())."""
        leader = self.wait_for_leader(timeout_s)
        leader.kill()
        return leader

    def call_leader(self, stub_type: type, method: str, request: Any, *,
                    timeout_s: float = 30.0, call_timeout_s: float = 5.0,
                    ) -> tuple[Any, dict[str, str], Member]:
        """`request` (idempotent: it is sent again as it is) with_call on the agreed leader,
        again after UNAVAILABLE, DEADLINE_EXCEEDED or NOT_LEADER, until `timeout_s`:
        (reply, trailing metadata, the member that answered). Other failures raise."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            leader = self.wait_for_leader(max(0.1, remaining))
            try:
                reply, call = getattr(leader.stub(stub_type), method).with_call(
                    request, timeout=max(0.1, min(call_timeout_s, remaining)))
                trailing = {key: value for key, value in call.trailing_metadata() or ()
                            if isinstance(value, str)}
                return reply, trailing, leader
            except grpc.RpcError as error:
                if error.code() not in RETRIED and error_reason(error) != NOT_LEADER:
                    raise
                if time.monotonic() > deadline:
                    raise AssertionError(f"{method} not answered within {timeout_s:g} s: "
                                         f"{error}\n{self.describe()}") from error
            time.sleep(0.05)

    def wait_caught_up(self, member: Member, timeout_s: float = 30.0) -> Status:
        """Until `member` follows the agreed leader in its term and holds at least the commit
        the leader had when this was called, and the leader agrees (its follower entry for
        `member` is connected and acknowledged that commit); the member's last Status."""
        leader = self.wait_for_leader(timeout_s)
        leader_status = leader.status()
        target = leader_status.commit
        deadline = time.monotonic() + timeout_s
        while True:
            status = member.try_status()
            seen = leader.try_status()
            entry = next((f for f in seen.followers if f.follower_id == member.address),
                         None) if seen is not None else None
            # The leader's view of the stream, not the member's `connected`: a follower sets
            # that on its first batch, so an idle caught-up one may still say False.
            if (status is not None and status.role == FOLLOWER
                    and status.leader == leader.address and status.term == leader_status.term
                    and status.commit >= target and entry is not None and entry.connected
                    and entry.acknowledged_commit >= target):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{member.name} did not catch up with {leader.name} (term "
                    f"{leader_status.term}, commit {target}) within {timeout_s:g} s: "
                    f"{describe(status)}\n{self.describe()}")
            time.sleep(0.05)

    def wait_until(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
        try:
            return wait_for(predicate, timeout_s)
        except AssertionError:
            raise AssertionError(
                f"{what}: not within {timeout_s:g} s\n{self.describe()}") from None

    def describe(self, statuses: dict[str, Status | None] | None = None) -> str:
        """Every member's state and Status and the tail of its log, for a failure message."""
        statuses = self.statuses() if statuses is None else statuses
        lines = []
        for member in self.members:
            state = ("paused" if member.paused else "running" if member.running
                     else "down")
            status = statuses.get(member.address)
            lines.append(f"{member.name} {member.address} pid={member.pid} {state}: "
                         f"{describe(status) if member.address in statuses else '-'}")
        for member in self.members:
            lines.append(f"--- {member.log_path} (tail)\n{member.log_tail(15)}")
        return "\n".join(lines)
