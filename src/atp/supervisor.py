"""`atpd --gateways N`: one writer process and N gateway processes, started, watched,
restarted and drained by the atpd process itself (the supervisor).

- The **writer** is an ordinary atpd that owns the data directory (ledger, LMDB, journal)
  and serves only on a private Unix socket (`unix:DIR/writer.sock`, DIR a fresh 0700
  directory under the system's temporary directory: a socket path may not exceed 107 bytes,
  which a data directory's may).
- Each **gateway** is an atpd follower of the writer over that socket, with an in-memory
  store, bound to the public --listen address with SO_REUSEPORT: the kernel spreads the
  connections over the gateways. It answers reads from its copy and forwards everything
  else to the writer (server/gateway.py). The writer publishes its durable commit in a
  file beside its socket (`commit`, the gateways' read index: server/gateway.py
  CommitBoard).
- With --auth-policy and TLS the gateways authorize each call and terminate TLS on the
  public port; the writer takes the caller's principal from the metadata its gateway sets
  (server/authorization.py TrustedPrincipal). With --sync-replicas the writer waits for
  that many followers other than its gateways (external `atpd --follow` members, which
  follow the public port: their Replication calls are forwarded to the writer).
- With --metrics-port P the supervisor serves on P the metrics of all its processes
  combined (server/summed_metrics.py: each child serves its page on a socket beside the
  writer's); each process serves its own too, gateway i on P + 1 + i, the writer on
  P + 1 + N.
- With --listen port 0 the supervisor picks the port: it binds a probe socket with
  SO_REUSEPORT to port 0 and keeps it bound (never listening, so it takes no connection)
  for its whole life, so the port stays ours across gateway restarts.
- A gateway that exits is started again (after a pause that doubles, up to
  `RESTART_PAUSE_MOST_S`, while it keeps dying young); so is the writer, and the gateways
  answer UNAVAILABLE meanwhile. A writer that exits before it serves (its data directory
  unusable, its socket unbindable) cannot come back: the supervisor stops the gateways and
  exits non-zero.
- SIGTERM (or SIGINT) drains: the gateways stop taking calls and finish theirs (--grace),
  then the writer makes its final commit and stops; the exit code is the writer's (0).
- The children are `python -m atp.daemon` with the supervisor's own arguments, plus hidden
  flags naming their role; each stops by itself if the supervisor disappears (kill -9).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from atp import flags, machine
from atp.bootstrap import ServerConfig, bind_failure
from atp.server.gateway import gateway_follower_id
from atp.server.summed_metrics import Page, SummedMetricsServer, read_page
from atp.tls import CertificateReloader, ServerTls, TlsFileError

log = logging.getLogger("atp.supervisor")

WRITER, GATEWAY = "writer", "gateway"
ROLES = (WRITER, GATEWAY)
SOCKET_NAME = "writer.sock"
# Beside it, the writer's last durable commit, which gateways read before each read.
COMMIT_FILE_NAME = "commit"
# ... and the command link's socket, which gateways send the writes they decoded over.
COMMAND_LINK_NAME = "commands.sock"
# The line a child (and atpd) prints once it serves.
LISTENING = "atpd listening on "
# atpd's log line; a child's names its role after the level (`log_format`).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How often the supervisor looks at its children.
POLL_S = 0.1
# A child that dies within this long of its start is dying young: its next start waits
# longer, from the first pause to the most.
YOUNG_S = 10.0
RESTART_PAUSE_FIRST_S = 0.1
RESTART_PAUSE_MOST_S = 5.0
# Beyond --grace, how long a stopping child may take before it is killed.
STOP_MARGIN_S = 15.0
# How often the supervisor looks whether the TLS files of its /metrics changed (gRPC looks
# at each new connection; an HTTPS server has no such hook).
METRICS_TLS_CHECK_S = 1.0
# How often a child looks whether its supervisor is still there.
ORPHAN_CHECK_S = 1.0


def cores() -> int:
    """The cores this process may run on: its affinity, capped by its CPU quota (a
    container's CPU limit; atp.machine)."""
    return machine.usable_cores()


# --gateways auto, until resolved_gateways() makes it a count.
AUTO_GATEWAYS = -1


def gateway_count(text: str) -> int:
    """--gateways: a whole number >= 0, or `auto` (AUTO_GATEWAYS: see resolved_gateways)."""
    if text.strip().lower() == "auto":
        return AUTO_GATEWAYS
    try:
        return flags.non_negative_int(text)
    except flags.InvalidValue:
        raise flags.InvalidValue(
            f"{text!r} is neither auto nor a whole number of at least 0") from None


def auto_gateways() -> int:
    """What `auto` means on this machine: a core for the writer, the others for gateways,
    and at least one gateway."""
    return max(1, cores() - 1)


def resolved_gateways(args: argparse.Namespace) -> int:
    """--gateways as a count. `auto` (the default) is auto_gateways(), except where gateways
    cannot run yet: a member of a cluster (--cluster) or a follower (--follow) is one process,
    as it was before gateways existed; a count given there is refused (gateway_conflict)."""
    if args.gateways != AUTO_GATEWAYS:
        return int(args.gateways)
    if args.gateway_role or args.follow or args.cluster:
        return 0
    return auto_gateways()


def gateway_conflict(args: argparse.Namespace) -> str:
    """Why --gateways cannot go with the other flags given ("" when it can). These are not
    built yet for gateways (see the README's "Gateways" section)."""
    if not args.gateways or args.gateway_role:
        return ""
    for flag, given in (("--follow", args.follow), ("--cluster", args.cluster)):
        if given:
            return (f"--gateways {args.gateways} does not work with {flag} yet: run with "
                    "--gateways 0 (one process)")
    if args.metrics_port and args.metrics_port + 1 + args.gateways > flags.PORT_MAX:
        return (f"--metrics-port {args.metrics_port} leaves no port for the metrics of "
                f"{args.gateways} gateways and the writer (they take the ports after it)")
    return ""


def log_format(args: argparse.Namespace) -> str:
    """atpd's log format; a child's lines also name who wrote them (`[writer]`, `[gateway 0]`
    ...), since the N + 1 processes share one log: an operator, or a test, can tell the
    writer's start-up line (what it loaded) from the gateways'."""
    if not args.gateway_role:
        return LOG_FORMAT
    who = WRITER if args.gateway_role == WRITER else f"{GATEWAY} {args.gateway_index}"
    return LOG_FORMAT.replace(" %(name)s", f" [{who}] %(name)s", 1)


# The replication log a gateway keeps: the least there is (see child_config).
GATEWAY_REPLICATION_LOG_BATCHES = 1


def child_config(config: ServerConfig, args: argparse.Namespace) -> ServerConfig:
    """A child's configuration: the supervisor's, made into a writer's or a gateway's."""
    target = f"unix:{args.writer_socket}"
    commit_file = str(Path(args.writer_socket).with_name(COMMIT_FILE_NAME))
    command_link = str(Path(args.writer_socket).with_name(COMMAND_LINK_NAME))
    if args.gateway_role == WRITER:
        # Named by the public address in its writes' metadata, as a single atpd would be;
        # its `tls` and `auth_policy` are its gateways' (it serves its socket in plaintext,
        # and trusts the principal its gateways name).
        return dataclasses.replace(
            config, listen=target, advertise=args.listen, behind_gateways=True,
            gateways=args.gateways,
            peer_tls=None, commit_file=commit_file, command_link=command_link,
            metrics_listen=process_metrics(config.metrics_listen, args.gateways),
            metrics_socket=metrics_socket(args.writer_socket, config.metrics_listen, WRITER))
    return dataclasses.replace(
        config, data_dir=None, follow=target, gateway_of=target, reuse_port=True,
        commit_file=commit_file, command_link=command_link,
        follower_id=gateway_follower_id(args.gateway_index), advertise=args.listen,
        gateways=args.gateways,
        metrics_listen=process_metrics(config.metrics_listen, args.gateway_index),
        metrics_socket=metrics_socket(args.writer_socket, config.metrics_listen, GATEWAY,
                                      args.gateway_index),
        peer_tls=None, peer_token="", sync_replicas=0,
        # Nobody streams from a gateway (replication calls go to the writer): the log every
        # member keeps for its followers (up to --replication-log-batches, 256 MB) would be
        # memory spent for nothing, in each gateway.
        replication_log_batches=GATEWAY_REPLICATION_LOG_BATCHES)


def process_metrics(summed_metrics: str | None, offset: int) -> str | None:
    """Where a child serves its own /metrics: `offset` + 1 ports after --metrics-port (where
    the supervisor serves them all combined): gateway i at offset i, the writer after the
    last gateway (None: no metrics)."""
    if not summed_metrics:
        return None
    host, port = summed_metrics.rsplit(":", 1)
    return f"{host}:{int(port) + 1 + offset}"


def metrics_socket(writer_socket: str, summed_metrics: str | None, role: str,
                   index: int = 0) -> str:
    """The socket a child serves its metrics page on for the supervisor ("": no metrics)."""
    return page_socket(writer_socket, role, index) if summed_metrics else ""


def page_socket(writer_socket: str, role: str, index: int = 0) -> str:
    """Where the child of `role` (gateway `index`) serves its metrics page: beside the
    writer's socket, in the supervisor's private directory."""
    name = "metrics-writer.sock" if role == WRITER else f"metrics-gateway-{index}.sock"
    return str(Path(writer_socket).with_name(name))


class Child:
    """One child process: its command, whether it serves yet, how often it died young."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.command = command
        self.process: subprocess.Popen[str] | None = None
        self.ready = threading.Event()
        self.started_at = 0.0
        self.pause_s = RESTART_PAUSE_FIRST_S

    def start(self) -> None:
        self.ready = threading.Event()
        self.started_at = time.monotonic()
        # stderr (the log) is the supervisor's; stdout says when the child serves. A session
        # of its own: a terminal's Ctrl-C reaches the supervisor only, which drains in order.
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        threading.Thread(target=self._read_stdout, args=(self.process, self.ready),
                         name=f"atpd-{self.name}-stdout", daemon=True).start()

    @staticmethod
    def _read_stdout(process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:  # read to the end: a full pipe would block the child
            if line.startswith(LISTENING):
                ready.set()
        process.stdout.close()

    def wait_ready(self, stopping: threading.Event) -> bool:
        """Until the child serves (True), or exits or the supervisor is told to stop."""
        while not self.ready.wait(POLL_S):
            if self.exit_code is not None or stopping.is_set():
                return False
        return True

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def next_pause(self) -> float:
        """How long to wait before starting it again after it exited."""
        if time.monotonic() - self.started_at > YOUNG_S:
            self.pause_s = RESTART_PAUSE_FIRST_S
        pause, self.pause_s = self.pause_s, min(RESTART_PAUSE_MOST_S, self.pause_s * 2)
        return pause

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """Its exit code, killing it if it takes longer than timeout_s."""
        if self.process is None:
            return 0
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("the %s (pid %d) did not stop in %.0f s: killed", self.name, self.pid,
                      timeout_s)
            self.process.kill()
            self.process.wait()
            return 1


class Supervisor:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.argv = argv
        self.stopping = threading.Event()
        self.socket_dir = Path(tempfile.mkdtemp(prefix="atpd-"))  # 0700: ours only
        self.writer_socket = self.socket_dir / SOCKET_NAME
        self.probe: socket.socket | None = None
        self.listen = self._public_address(args.listen)
        self.writer = Child(WRITER, self._command(WRITER, 0))
        self.gateways = [Child(f"{GATEWAY} {index}", self._command(GATEWAY, index))
                         for index in range(args.gateways)]
        self.never_served = False  # a child could not start: atpd never served

    def _public_address(self, listen: str) -> str:
        """--listen with its port fixed: port 0 becomes a port held for the gateways."""
        host, port = listen.rsplit(":", 1)
        if port != "0":
            return listen
        bare = host.strip("[]")
        probe = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((bare, 0))
        self.probe = probe
        return f"{host}:{probe.getsockname()[1]}"

    def _command(self, role: str, index: int) -> list[str]:
        # The count resolved here (auto is this machine's), after the flags given: the last
        # --gateways wins, so that every child agrees with its supervisor.
        return [sys.executable, "-m", "atp.daemon", *self.argv, "--listen", self.listen,
                "--gateways", str(self.args.gateways), "--gateway-role", role,
                "--writer-socket", str(self.writer_socket), "--gateway-index", str(index)]

    def run(self) -> int:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, lambda *_: self.stopping.set())
        try:
            try:  # first: a metrics port that cannot be bound stops atpd before anything runs
                self._serve_metrics()
            except (OSError, TlsFileError) as error:
                address = flags.join_host_port(self.args.metrics_host, self.args.metrics_port)
                reason = bind_failure(error) if isinstance(error, OSError) else error
                print(f"atpd: cannot serve metrics on {address}: {reason}", file=sys.stderr)
                return 2
            code = self._start()
            if code is None:
                print(f"{LISTENING}{self.listen}", flush=True)
                if getattr(self.args, "gateways_auto", False):
                    log.info("--gateways auto: %d for %s", len(self.gateways),
                             machine.describe_cores())
                log.info("atpd serving on %s: a writer (pid %d) and %d gateway%s (pids %s); %s",
                         self.listen, self.writer.pid, len(self.gateways),
                         "" if len(self.gateways) == 1 else "s",
                         ", ".join(str(gateway.pid) for gateway in self.gateways),
                         self._metrics_where())
                code = self._watch()
            return self._drain(code)
        finally:
            if self.probe is not None:
                self.probe.close()
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _serve_metrics(self) -> None:
        """--metrics-port: the combined metrics of the children, over HTTPS like theirs when
        --metrics-tls is on (and the certificate reloaded when its files change)."""
        args = self.args
        if not args.metrics_port:
            return
        server = SummedMetricsServer(self._metrics_pages)
        tls = (ServerTls(args.tls_cert, args.tls_key, args.client_ca or None)
               if args.tls_cert and args.metrics_tls != "off" else None)
        server.serve(args.metrics_host.strip("[]"), args.metrics_port, tls)
        if tls is not None:
            reloader = CertificateReloader(tls)
            reloader.on_reload.append(server.reload_tls)
            threading.Thread(target=self._watch_tls, args=(reloader,),
                             name="atpd-metrics-tls", daemon=True).start()

    def _metrics_where(self) -> str:
        """Where the metrics are served, for the start-up line (operators look there)."""
        args = self.args
        if not args.metrics_port:
            return "no metrics (--metrics-port 0)"
        scheme = "https" if args.tls_cert and args.metrics_tls != "off" else "http"
        address = flags.join_host_port(args.metrics_host, args.metrics_port)
        return (f"metrics at {scheme}://{address}/metrics (all processes; each its own on "
                f"the {len(self.gateways) + 1} ports after it)")

    def _watch_tls(self, reloader: CertificateReloader) -> None:
        while not self.stopping.wait(METRICS_TLS_CHECK_S):
            reloader.check()

    def _metrics_pages(self) -> list[Page]:
        """Each child's metrics page, read now (a child that does not answer is left out)."""
        sources = [(WRITER, page_socket(str(self.writer_socket), WRITER))]
        sources += [(GATEWAY, page_socket(str(self.writer_socket), GATEWAY, index))
                    for index in range(len(self.gateways))]
        pages = []
        for role, path in sources:
            page = read_page(path)
            if page is not None:
                pages.append((role, page))
        return pages

    def _start(self) -> int | None:
        """Starts the writer, then the gateways all at once (each waits for the writer, none
        for another: a start takes one gateway's time, not N); an exit code if one of them
        cannot start."""
        self.writer.start()
        if not self.writer.wait_ready(self.stopping):
            return self._start_failure(self.writer)
        for gateway in self.gateways:
            gateway.start()
        for gateway in self.gateways:
            if not gateway.wait_ready(self.stopping):
                return self._start_failure(gateway)
        return None

    def _start_failure(self, child: Child) -> int | None:
        if self.stopping.is_set():
            return None  # told to stop while starting: drain what runs
        code = child.exit_code
        # The child said why on stderr, in the one line a single atpd prints (an unusable
        # data directory, a busy port): what the operator reads, with the same exit code;
        # a line of ours on top would only repeat it.
        log.debug("the %s exited (code %s) before it served; atpd stops", child.name, code)
        self.never_served = True
        return code or 2

    def _watch(self) -> int | None:
        """Restarts what dies until told to stop; an exit code if the writer cannot come
        back."""
        while not self.stopping.wait(POLL_S):
            if self.writer.exit_code is not None:
                code = self._restart(self.writer)
                if code is not None:
                    return code
            for gateway in self.gateways:
                if gateway.exit_code is not None and not self.stopping.is_set():
                    self._restart(gateway)
        return None

    def _restart(self, child: Child) -> int | None:
        pause = child.next_pause()
        log.warning("the %s (pid %d) exited with code %s; starting it again in %.1f s",
                    child.name, child.pid, child.exit_code, pause)
        if self.stopping.wait(pause):
            return None
        child.start()
        if child.wait_ready(self.stopping) or self.stopping.is_set():
            log.info("the %s serves again (pid %d)", child.name, child.pid)
            return None
        if child is self.writer:
            log.error("the writer cannot come back (it exited with code %s before it "
                      "served); atpd stops", child.exit_code)
            return child.exit_code or 1
        return None  # a gateway: tried again on the next look

    def _drain(self, failure: int | None) -> int:
        """Gateways first (they finish their calls, which still reach the writer), then the
        writer (its final commit); the writer's exit code unless a failure came first."""
        grace_s = self.args.grace + STOP_MARGIN_S
        for gateway in self.gateways:
            gateway.terminate()
        for gateway in self.gateways:
            gateway.wait(grace_s)
        down = self.writer.exit_code  # it died, and was told to stop before its restart
        self.writer.terminate()
        code = self.writer.wait(grace_s)
        if down is not None and not self.never_served:
            log.warning("stopping while the writer was down (it exited with code %s); its "
                        "data is as a kill -9 leaves it: whole", down)
            code = 0
        if code == -signal.SIGTERM:  # stopped while starting, before it served: a clean stop
            code = 0
        return failure if failure is not None else code


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """atpd with --gateways N >= 1 (as the supervisor): its exit code."""
    return Supervisor(args, argv).run()


def die_with_supervisor(supervisor_pid: int) -> None:
    """A child is killed (SIGKILL) the moment its supervisor dies: kill -9 of atpd is then
    kill -9 of all its processes, as with one process, and the data directory is free at
    once for an atpd started again (Linux's PR_SET_PDEATHSIG; elsewhere, and should the
    supervisor already be gone, `stop_when_orphaned` stops the child within a second)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # Linux only

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


async def stop_when_orphaned(supervisor_pid: int, stop: Callable[[], Awaitable[None]],
                             ) -> None:
    """A child's watch on its supervisor: once it is gone (killed), the child stops too,
    rather than serve on with nobody to restart or drain it."""
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(ORPHAN_CHECK_S)
    log.warning("the supervisor (pid %d) is gone: stopping", supervisor_pid)
    await stop()
