"""The atpd under test: a fresh `python -m atp.daemon` subprocess, its CPU time, its shutdown."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import REPO_ROOT

_LISTENING = re.compile(r"atpd listening on (\S+)")
_FOLLOW_CPU = re.compile(r"^atp_follow_apply_cpu_seconds_total (\S+)$", re.MULTILINE)
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        text = stat.read()
    # Field 2 (comm) is parenthesised and may hold spaces: split after its closing paren.
    fields = text[text.rindex(")") + 2:].split()
    # Fields 14 and 15 of the full line are fields 12 and 13 after the comm (state is 3rd).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children_by_role(parent: int) -> list[tuple[int, str]]:
    """The (pid, role) of atpd --gateways' children, from their command lines."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent and b"--gateway-role" in command:
            found.append((int(entry), command[command.index(b"--gateway-role") + 1].decode()))
    return found


class ServerProcess:
    """Starts atpd on 127.0.0.1:0 (port read from its stdout) and waits for SERVING."""

    def __init__(self, data_dir: str, sync: str, log_path: str, gateways: int = 0) -> None:
        self.data_dir = data_dir
        # atpd --gateways N: a supervisor, one writer and N gateway processes (0: one process).
        self.gateways = gateways
        self.sync = sync
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.target = ""
        # Its /metrics: ATP_METRICS_PORT's if set (bench.soak), else a free port with gateways
        # (what the gateways spend on their copies), else none.
        self.metrics_port = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        env = dict(os.environ)
        # Serve this checkout's code even if another copy of atp is installed.
        source = os.path.join(REPO_ROOT, "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
        command = [
            sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
            "--data-dir", self.data_dir, "--sync", self.sync, "--log-level", "WARNING",
            "--gateways", str(self.gateways),  # said even when 0: atpd's default is auto
        ]
        self.metrics_port = int(env.get("ATP_METRICS_PORT") or 0) or (
            free_port() if self.gateways else 0)
        if self.metrics_port:
            command += ["--metrics-port", str(self.metrics_port)]
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO_ROOT
            )
        assert self.process.stdout is not None
        self.target = self._read_target(self.process.stdout, timeout_s)
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()
        self._wait_serving(timeout_s)
        return self

    def _read_target(self, stdout: IO[str], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                line = stdout.readline()
                if not line:
                    break
                match = _LISTENING.search(line)
                if match:
                    return match.group(1)
        self.kill()
        raise RuntimeError(f"atpd did not start; its log is {self.log_path}:\n{self.log_tail()}")

    @staticmethod
    def _drain(stdout: IO[str]) -> None:
        for _ in stdout:
            pass

    def _wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"atpd never reported SERVING:\n{self.log_tail()}")
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU of atpd and, with --gateways, of its writer and gateway processes."""
        return sum(self.cpu_seconds_by_role().values())

    def cpu_seconds_by_role(self) -> dict[str, float]:
        """CPU seconds of each role: `atpd` alone, or with --gateways `supervisor`, `writer`
        and `gateway` (all gateways together). A child restarted meanwhile starts again at 0."""
        (pid, role), *children = self.pids_by_role()
        roles = {role: process_cpu_seconds(pid)}
        if self.gateways:
            roles.update(writer=0.0, gateway=0.0)
        for pid, role in children:
            try:
                roles[role] += process_cpu_seconds(pid)
            except OSError:
                pass  # gone meanwhile
        return roles

    def follow_cpu_seconds(self) -> float:
        """CPU seconds the gateways spent keeping their copies of the ledger, all together
        (atp_follow_apply_cpu_seconds_total on the supervisor's /metrics); 0 without
        gateways. A gateway restarted meanwhile starts again at 0."""
        if not self.metrics_port:
            return 0.0
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            match = _FOLLOW_CPU.search(page.read().decode())
        return float(match.group(1)) if match else 0.0

    def pids_by_role(self) -> list[tuple[int, str]]:
        """(pid, role) of each process: atpd alone, or the supervisor and its children."""
        if not self.gateways:
            return [(self.pid, "atpd")]
        return [(self.pid, "supervisor"), *_children_by_role(self.pid)]

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (drain, final commit, close) and wait; kill -9 and return -9 on timeout."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
