"""A real atpd subprocess on a free loopback port, for integration, crash and CLI tests.

An atpd runs as one process, or (`gateways` N >= 1) as a supervisor of one writer process
and N gateway processes (`atpd --gateways N`): the harness finds the writer, which owns the
data directory, among the supervisor's children (`writer_pid`)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.client import make_channel
from atp.supervisor import AUTO_GATEWAYS, GATEWAY, WRITER, auto_gateways, gateway_count
from atp.tls import TlsOptions

_LISTENING = re.compile(r"atpd listening on (\S+)")


class AtpdProcess:
    """Starts `python -m atp.daemon` on 127.0.0.1:0 with an LMDB data dir; restartable."""

    def __init__(self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None,
                 tls: TlsOptions | None = None, gateways: int | None = None) -> None:
        """`tls`: how this harness reaches an atpd started with --tls-cert (its health checks,
        `channel()`); None: plaintext. `gateways`: atpd's --gateways (0: one process); None:
        as the environment's ATP_TEST_GATEWAYS says (0 when unset)."""
        self.data_dir = data_dir
        self.tls = tls
        self.extra_args = extra_args
        self.gateways = default_gateways() if gateways is None else gateways
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.target = ""
        self.log_path = data_dir.parent / f"{data_dir.name}-atpd.log"

    def start(self, timeout_s: float = 30.0) -> AtpdProcess:
        command = [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
                   "--data-dir", str(self.data_dir), "--log-level", "WARNING", *self.extra_args]
        if "--gateways" not in self.extra_args:  # said even when 0: atpd's default is auto
            command += ["--gateways", str(self.gateways)]
        log = open(self.log_path, "a")  # noqa: SIM115 - handed to the child, closed with it
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env
        )
        self.target = self._read_target(timeout_s)
        self.wait_serving(timeout_s)
        return self

    def _read_target(self, timeout_s: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                return match.group(1)
        self.kill()
        raise RuntimeError(f"atpd did not start; see {self.log_path}:\n{self.log_path.read_text()}")

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("atpd never reported SERVING")
                time.sleep(0.05)

    def channel(self) -> grpc.Channel:
        return make_channel(self.target, self.tls)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait: the graceful path (drain, final commit, close LMDB)."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._closed()
        return code

    def kill(self) -> None:
        """kill -9: no drain, no final commit."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(20)
        self._closed()

    def _closed(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def writer_pid(self, timeout_s: float = 30.0) -> int:
        """The pid of the process that owns the data directory (and its lock): atpd itself,
        or with gateways its writer child (waited for while the supervisor restarts it)."""
        assert self.process is not None, "atpd is not running"
        if not self.gateways:
            return self.process.pid
        deadline = time.monotonic() + timeout_s
        while True:
            writers = children(self.process.pid)[WRITER]
            if len(writers) == 1:
                return writers[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"atpd (pid {self.process.pid}) has writers {writers}")
            time.sleep(0.05)

    def restart(self) -> AtpdProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> AtpdProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()


def default_gateways() -> int:
    """ATP_TEST_GATEWAYS: the --gateways of every atpd a test starts without saying (a count
    or `auto`, as the flag takes; 0 when unset)."""
    text = os.environ.get("ATP_TEST_GATEWAYS", "").strip()
    count = gateway_count(text) if text else 0
    return auto_gateways() if count == AUTO_GATEWAYS else count


def children(supervisor_pid: int) -> dict[str, list[int]]:
    """The supervisor's live children by role (writer, gateway), from /proc."""
    found: dict[str, list[int]] = {WRITER: [], GATEWAY: []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        state, parent = fields[0], int(fields[1])
        if parent != supervisor_pid or state == "Z" or b"--gateway-role" not in command:
            continue
        role = command[command.index(b"--gateway-role") + 1].decode()
        found[role].append(int(entry.name))
    return found


def free_port() -> int:
    """A free port on 127.0.0.1 (for a listener a test starts, such as atpd's metrics)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
