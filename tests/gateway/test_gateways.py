"""`atpd --gateways 2` against real processes: the README's calls through the shared port,
reads that see every write acknowledged before them (through any connection), kill -9 of a
gateway and of the writer under load with nothing acknowledged lost, and a clean drain."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp import machine
from atp.supervisor import auto_gateways
from atp.v1 import (
    availability_pb2,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
    reservations_pb2,
    server_pb2,
    server_pb2_grpc,
)
from tests.gateway.support import (
    GATEWAYS,
    Load,
    all_present,
    channels,
    children,
    gateway_atpd,
    kill9,
    supervisor_pid,
    wait_replaced,
)
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    commit,
    expect_error,
    get_position,
    get_reservation,
    line,
    release,
    reserve,
    reserve_request,
    stocked,
    wait_for,
)
from tests.support.atpd import AtpdProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.crash]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AtpdProcess]:
    process = gateway_atpd(tmp_path / "data").start()
    try:
        yield process
    finally:
        if process.process is not None:
            code = process.stop()
            assert code == 0, f"atpd exited {code}; see {process.log_path}"


def test_the_walkthrough_works_through_the_gateways(server: AtpdProcess) -> None:
    pids = children(supervisor_pid(server))
    assert len(pids["writer"]) == 1 and len(pids["gateway"]) == GATEWAYS
    api = Api(server.channel())
    sku, node = stocked(api, 10)
    held = reserve(api, line("l1", sku, node, 3))
    assert held.state == common_pb2.Reservation.HELD
    committed = commit(api, held.reservation_id)
    assert committed.state == common_pb2.Reservation.COMMITTED
    position = get_position(api, sku, node)
    assert (position.on_hand, position.allocated, position.available) == (10, 3, 7)
    assert get_reservation(api, held.reservation_id) == committed
    # A write's trailers come from the writer, relayed unchanged.
    _, call = api.reservations.Reserve.with_call(
        reserve_request(None, [line("l1", sku, node, 1)]), timeout=CALL_TIMEOUT)
    trailers = dict(call.trailing_metadata())
    assert int(trailers["atp-commit-sequence"]) > 0
    assert trailers["atp-member"] == server.target
    # Refusals keep their code, reason and field paths.
    expect_error(api.reservations.Reserve, reserve_request(None, [line("l1", sku, node, 100)]),
                 Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY")
    expect_error(api.reservations.Reserve, reserve_request("", []), Code.INVALID_ARGUMENT,
                 "INVALID_ARGUMENT", fields=["reservation_id", "lines"])
    # The batch and the stream are relayed too (a stream of requests, a stream of results).
    batch = api.reservations.ReserveBatch(reservations_pb2.ReserveBatchRequest(requests=[
        reserve_request(None, [line("l1", sku, node, 1)]) for _ in range(3)]),
        timeout=CALL_TIMEOUT)
    assert [result.WhichOneof("result") for result in batch.results] == ["reservation"] * 3
    streamed = list(api.reservations.ReserveStream(
        iter([reserve_request(None, [line("l1", sku, node, 1)]) for _ in range(2)]),
        timeout=CALL_TIMEOUT))
    assert [result.WhichOneof("result") for result in streamed] == ["reservation"] * 2
    position = get_position(api, sku, node)
    assert (position.allocated, position.reserved) == (3, 1 + 3 + 2)
    # Watch, from the gateway's copy of the journal.
    events = list(events_pb2_grpc.EventsStub(api.channel).Watch(
        events_pb2.WatchRequest(sku=sku, stop_at_head=True), timeout=CALL_TIMEOUT))
    types = [event.type for event in events]
    assert "RESERVATION_CREATED" in types and "RESERVATION_COMMITTED" in types
    # GetServerInfo is the writer's (standing alone: its gateways are not followers);
    # health answers on the shared port.
    info = server_pb2_grpc.ServerStub(api.channel).GetServerInfo(
        server_pb2.GetServerInfoRequest(), timeout=CALL_TIMEOUT)
    assert info.role == "standalone"
    # It says how it runs: GATEWAYS gateways in front of it, each copy following its feed.
    assert info.gateways == GATEWAYS
    assert wait_for(lambda: server_pb2_grpc.ServerStub(api.channel).GetServerInfo(
        server_pb2.GetServerInfoRequest(), timeout=CALL_TIMEOUT).gateways_following == GATEWAYS)
    health = health_pb2_grpc.HealthStub(api.channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=CALL_TIMEOUT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_read_through_another_connection_sees_every_acknowledged_write(
    server: AtpdProcess,
) -> None:
    apis = [Api(channel) for channel in channels(server, 4)]
    sku, node = stocked(apis[0], 1000)
    for index in range(60):
        writer_api, reader_api = apis[index % 4], apis[(index + 1) % 4]
        held = reserve(writer_api, line("l1", sku, node, 1))
        assert get_reservation(reader_api, held.reservation_id).reservation_id == \
            held.reservation_id
        assert get_position(reader_api, sku, node).reserved == index + 1
        listed = reader_api.reservations.ListReservations(
            reservations_pb2.ListReservationsRequest(sku=sku, page_size=1000),
            timeout=CALL_TIMEOUT)
        assert len(listed.reservations) == index + 1


def test_kill9_of_a_gateway_fails_only_its_calls_and_it_is_restarted(
    server: AtpdProcess,
) -> None:
    api = Api(server.channel())
    sku, node = stocked(api, 100_000)
    load = Load([Api(channel) for channel in channels(server, 4)], sku, node).start()
    try:
        load.until_acknowledged(20)
        victim = children(supervisor_pid(server))["gateway"][0]
        kill9(victim)
        wait_replaced(server, "gateway", victim, GATEWAYS)
        load.until_acknowledged(40)
    finally:
        load.finish()
    assert set(load.failures) <= {grpc.StatusCode.UNAVAILABLE}, load.failures
    assert all_present(Api(server.channel()), load.acknowledged) == []
    # Retries with the same id never reserved twice.
    assert get_position(api, sku, node).reserved == len(load.acknowledged)


def test_kill9_of_the_writer_makes_calls_unavailable_until_it_is_back(
    server: AtpdProcess,
) -> None:
    api = Api(server.channel())
    sku, node = stocked(api, 100_000)
    load = Load([Api(channel) for channel in channels(server, 3)], sku, node).start()
    try:
        load.until_acknowledged(20)
        victim = children(supervisor_pid(server))["writer"][0]
        kill9(victim)
        wait_replaced(server, "writer", victim, 1)
        load.until_acknowledged(30)
    finally:
        load.finish()
    assert set(load.failures) <= {grpc.StatusCode.UNAVAILABLE}, load.failures
    # Reads too wait for the new writer (never a stale answer): every acknowledged write.
    assert all_present(api, load.acknowledged) == []
    assert get_position(api, sku, node).reserved == len(load.acknowledged)
    # A gateway started now takes a snapshot of the new writer (whose log starts after it).
    victim = children(supervisor_pid(server))["gateway"][0]
    kill9(victim)
    wait_replaced(server, "gateway", victim, GATEWAYS)
    for channel in channels(server, 4):
        assert get_position(Api(channel), sku, node).reserved == len(load.acknowledged)


def test_while_the_writer_is_down_writes_are_unavailable_and_reads_go_on(
    server: AtpdProcess,
) -> None:
    """The supervisor stopped (SIGSTOP) so that the writer stays down: writes fail
    UNAVAILABLE, reads answer from the gateways' copies (proven current: no acknowledged
    write is newer than the dead writer's last published commit); once the supervisor
    continues, the writer is back with everything."""
    api = Api(server.channel())
    sku, node = stocked(api, 10)
    held = reserve(api, line("l1", sku, node, 4))
    ended = reserve(api, line("l1", sku, node, 1))
    release(api, ended.reservation_id)
    # Both copies hold the last commit (one that does not could not prove a read current,
    # and would answer UNAVAILABLE until the writer is back).
    wait_for(lambda: _gateways_hold_all(api), timeout_s=30)
    supervisor = supervisor_pid(server)
    writer = children(supervisor)["writer"][0]
    os.kill(supervisor, signal.SIGSTOP)
    try:
        kill9(writer)
        wait_for(lambda: _zombie(writer), timeout_s=30)
        expect_error(api.reservations.Reserve, reserve_request(None, [line("l1", sku, node, 1)]),
                     Code.UNAVAILABLE)
        # Whether writes are taken is the writer's to say: not now. The gateway serves.
        assert _health(api, "atp.v1.Writes") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _health(api, "") == health_pb2.HealthCheckResponse.SERVING
        for channel in channels(server, 4):
            assert get_reservation(Api(channel), held.reservation_id) == held
            assert get_position(Api(channel), sku, node).reserved == 4
            # A closed reservation is the writer's (a gateway keeps live state only).
            expect_error(Api(channel).reservations.GetReservation,
                         reservations_pb2.GetReservationRequest(
                             reservation_id=ended.reservation_id), Code.UNAVAILABLE)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_replaced(server, "writer", writer, 1)
    request = reserve_request(None, [line("l1", sku, node, 1)])
    again = wait_for(lambda: _answered(api, request), timeout_s=30)
    assert again.state == common_pb2.Reservation.HELD
    assert get_position(api, sku, node).reserved == 5
    # Relayed reads go over the gateway's own channel to the writer, which reconnects on its
    # own backoff (up to a second): UNAVAILABLE until then, as a forwarded write would be.
    closed = wait_for(lambda: _read_when_back(api, ended.reservation_id), timeout_s=30)
    assert closed.state == common_pb2.Reservation.RELEASED
    # The gateway follows the writer's health by a Watch, which reconnects on its own time.
    wait_for(lambda: _health(api, "atp.v1.Writes") == health_pb2.HealthCheckResponse.SERVING,
             timeout_s=10)


def _gateways_hold_all(api: Api) -> bool:
    status = replication_pb2_grpc.ReplicationStub(api.channel).Status(
        replication_pb2.ReplicationStatusRequest(), timeout=CALL_TIMEOUT)
    return len(status.followers) == GATEWAYS and all(
        follower.acknowledged_commit == status.commit for follower in status.followers)


def _health(api: Api, service: str) -> int:
    return int(health_pb2_grpc.HealthStub(api.channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT).status)


def _read_when_back(api: Api, reservation_id: str) -> common_pb2.Reservation | None:
    """The reservation, or None while the writer is not reachable (UNAVAILABLE)."""
    try:
        return get_reservation(api, reservation_id)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            raise
        return None


def _answered(api: Api, request: reservations_pb2.ReserveRequest,
              ) -> common_pb2.Reservation | None:
    """The reservation, or None while the writer is not back (UNAVAILABLE)."""
    try:
        return api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            raise
        return None


def test_a_writer_that_cannot_come_back_stops_atpd_non_zero(tmp_path: Path) -> None:
    server = gateway_atpd(tmp_path / "data").start()
    stocked(Api(server.channel()), 5)
    writer = children(supervisor_pid(server))["writer"][0]
    (tmp_path / "data").rename(tmp_path / "moved")
    (tmp_path / "data").write_text("not a directory")  # the writer cannot start again
    kill9(writer)
    assert server.process is not None
    code = server.process.wait(60)
    server.process = None
    assert code != 0


def test_sigterm_drains_every_process_and_exits_0(tmp_path: Path) -> None:
    server = gateway_atpd(tmp_path / "data").start()
    api = Api(server.channel())
    sku, node = stocked(api, 100_000)
    supervisor = supervisor_pid(server)
    before = children(supervisor)
    load = Load([Api(channel) for channel in channels(server, 3)], sku, node).start()
    try:
        load.until_acknowledged(10)
        assert server.stop() == 0
    finally:
        load.finish()
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid)
               for pid in [*before["writer"], *before["gateway"]])
    # Everything acknowledged is on disk: a single-process atpd finds it.
    with AtpdProcess(tmp_path / "data") as single:
        assert all_present(Api(single.channel()), load.acknowledged) == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_writer_that_cannot_start_stops_atpd_non_zero(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    finished = subprocess.run(
        [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0", "--gateways", "1",
         "--data-dir", str(not_a_directory)],
        check=False, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    assert "atpd listening" not in finished.stdout


def test_the_children_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    server = gateway_atpd(tmp_path / "data").start()
    pids = children(supervisor_pid(server))
    server.kill()  # kill -9 of the supervisor: nobody left to restart or drain them
    orphans = [*pids["writer"], *pids["gateway"]]
    assert len(orphans) == 1 + GATEWAYS
    wait_for(lambda: all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in orphans),
             timeout_s=30)


def test_a_min_sequence_not_made_yet_is_refused_as_by_one_process(server: AtpdProcess) -> None:
    api = Api(server.channel())
    sku, node = stocked(api, 5)
    _, call = api.reservations.Reserve.with_call(
        reserve_request(None, [line("l1", sku, node, 1)]), timeout=CALL_TIMEOUT)
    made = int(dict(call.trailing_metadata())["atp-commit-sequence"])
    read = availability_pb2.GetAvailabilityRequest(skus=[sku], min_sequence=made)
    assert api.availability.GetAvailability(read, timeout=CALL_TIMEOUT).positions[0].reserved == 1
    read.min_sequence = made + 1000
    expect_error(api.availability.GetAvailability, read, Code.INVALID_ARGUMENT,
                 "INVALID_ARGUMENT", fields=["min_sequence"])


def test_sigterm_ends_a_forwarded_reserve_stream_unavailable_at_once(tmp_path: Path) -> None:
    server = gateway_atpd(tmp_path / "data", "--grace", "30").start()
    api = Api(server.channel())
    sku, node = stocked(api, 100)
    requests: queue.Queue[reservations_pb2.ReserveRequest | None] = queue.Queue()

    def sent() -> Iterator[reservations_pb2.ReserveRequest]:
        while (request := requests.get()) is not None:
            yield request

    stream = api.reservations.ReserveStream(sent(), timeout=60)
    requests.put(reserve_request(None, [line("l1", sku, node, 1)]))
    first = next(stream)
    assert first.reservation.reservation_id and not first.status.code
    # Within the 30 s grace only because the stream is ended, not waited for.
    assert server.stop(timeout_s=25) == 0
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stream:
            pass
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "shutting down" in (ended.value.details() or "")  # type: ignore[attr-defined]
    requests.put(None)


def test_each_process_serves_its_own_metrics(tmp_path: Path) -> None:
    """Gateway i on the port 1 + i after --metrics-port, the writer after the last gateway
    (--metrics-port itself serves their totals: test_summed_metrics.py)."""
    port = free_port()
    server = gateway_atpd(tmp_path / "data", "--metrics-port", str(port)).start()
    try:
        api = Api(server.channel())
        sku, node = stocked(api, 5)
        for _ in range(10):
            get_position(api, sku, node)
        pages = [_metrics(port + 1 + offset) for offset in range(GATEWAYS + 1)]
        gateways, writer = pages[:GATEWAYS], pages[GATEWAYS]
        assert 'atp_rpc_total{code="OK",method="AdjustStock"}' in writer
        assert "GetAvailability" not in writer  # reads never reach the writer
        assert sum(_count(page, 'method="GetAvailability"') for page in gateways) == 10
    finally:
        assert server.stop() == 0


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def _count(page: str, label: str) -> float:
    return sum(float(row.rsplit(" ", 1)[1]) for row in page.splitlines()
               if row.startswith("atp_rpc_total{") and label in row and 'code="OK"' in row)


def test_forwarded_reserve_streams_end_ok_when_their_requests_end(server: AtpdProcess) -> None:
    """The writer's answers may end before the gateway has finished half-closing the
    writer's side: that is the stream's normal end, never a shutdown."""
    api = Api(server.channel())
    sku, node = stocked(api, 10_000)
    assert list(api.reservations.ReserveStream(iter([]), timeout=CALL_TIMEOUT)) == []
    for count in range(20):  # 0 to 19 messages (refused ones too: the writer ends first)
        requests = [reserve_request(None, [line("l1", sku, node, 1 if index % 3 else 0)])
                    for index in range(count)]
        results = list(api.reservations.ReserveStream(iter(requests), timeout=CALL_TIMEOUT))
        assert [result.reservation_id for result in results] == [
            request.reservation_id for request in requests]
    assert get_position(api, sku, node).reserved == sum(
        sum(1 for index in range(count) if index % 3) for count in range(20))


def test_atpd_without_the_flag_runs_a_writer_and_a_gateway_per_core_but_one(
    tmp_path: Path,
) -> None:
    """The default is `--gateways auto`: nothing said, nothing in the environment."""
    environment = {name: value for name, value in os.environ.items() if name != "ATP_GATEWAYS"}
    log_path = tmp_path / "atpd.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
             "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.PIPE, stderr=log_file, text=True, env=environment)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("atpd listening on 127.0.0.1:"), line
        found = children(process.pid)
        assert len(found["writer"]) == 1
        assert len(found["gateway"]) == auto_gateways()
        target = line.split()[-1]
        with grpc.insecure_channel(target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    # The start-up log says how `auto` counted (the cores, capped by any CPU quota).
    assert f"--gateways auto: {auto_gateways()} for {machine.describe_cores()}" in (
        log_path.read_text())
