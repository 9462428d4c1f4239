"""Transport security: TLS and mutual TLS for atpd, its clients, its followers and etcd.

Server side, `ServerTls` names the files atpd was started with (--tls-cert, --tls-key,
--client-ca); `CertificateReloader` reads them, checks them (a certificate and its key that
match, a CA file that holds certificates) and hands gRPC a certificate configuration. gRPC asks
the reloader on every new connection (`grpc.dynamic_ssl_server_credentials`): when a file's
modification time, size or inode changed it is read again, so that replacing the files
rotates the certificate without a restart. Files that do not load then are logged as an error
and the configuration in force is kept; at start they stop atpd (`TlsFileError`).

Client side, `TlsOptions` names a CA to verify the server against (none: the system's roots),
and optionally a certificate and key to present (mutual TLS); `channel_credentials` reads
them when a channel is made, so that a channel made after a rotation uses the new files.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = [
    "CertificateReloader",
    "ServerTls",
    "TlsFileError",
    "TlsOptions",
    "channel_credentials",
    "is_loopback",
]

log = logging.getLogger("atp.tls")

# The gRPC channel option that makes a client check the server's certificate against this name
# instead of the target's host (tests, or a server reached through an address it is not named
# by).
TARGET_NAME_OVERRIDE = "grpc.ssl_target_name_override"


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be read or used; the message names it."""


@dataclass(frozen=True)
class TlsOptions:
    """What a client (or a follower, or atpd's etcd client) uses to reach a TLS server.

    ca: PEM file of the CA(s) to verify the server against; None: the system's trusted roots.
    cert, key: PEM files of the certificate and key to present (mutual TLS); both or neither.
    server_name: the name to verify the server's certificate against instead of the target's
    host (for tests, or a server reached by an address its certificate does not name).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("a client certificate needs its key, and a key its certificate")

    def credentials(self) -> grpc.ChannelCredentials:
        return channel_credentials(self)

    def channel_options(self) -> list[tuple[str, str]]:
        return [(TARGET_NAME_OVERRIDE, self.server_name)] if self.server_name else []


def channel_credentials(options: TlsOptions) -> grpc.ChannelCredentials:
    """gRPC channel credentials from the files `options` names, read now."""
    root = _read(options.ca, "CA") if options.ca else None
    if options.cert and options.key:
        check_key_pair(options.cert, options.key)
        return grpc.ssl_channel_credentials(root, _read(options.key, "key"),
                                            _read(options.cert, "certificate"))
    return grpc.ssl_channel_credentials(root)


@dataclass(frozen=True)
class ServerTls:
    """atpd's own TLS files: its certificate and key, and the CA(s) whose client certificates
    it requires (None: clients present none)."""

    cert: str
    key: str
    client_ca: str | None = None


@dataclass(frozen=True)
class _Loaded:
    """The files' contents and the configuration made of them."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    configuration: grpc.ServerCertificateConfiguration


class CertificateReloader:
    """Reads ServerTls's files, and again whenever one of them changes on disk."""

    def __init__(self, tls: ServerTls) -> None:
        self.tls = tls
        self._lock = threading.Lock()
        self._stamps = self._stamp()
        self.loaded = self._load()  # raises TlsFileError: atpd does not start
        self._handed = self.loaded  # what gRPC was last given
        self.reloads = 0
        self.failures = 0
        # Called with the new files after a successful reload (the metrics server's context).
        self.on_reload: list[Callable[[ServerTls], None]] = []

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that ask this reloader for changes on every new connection."""
        return grpc.dynamic_ssl_server_credentials(
            self.loaded.configuration, self.fetch,
            require_client_authentication=self.tls.client_ca is not None)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate-configuration fetcher: the configuration of files that changed
        since gRPC last had one (and that load), else None: keep the one in force. Never
        raises."""
        try:
            self.check()
        except Exception:  # a fetcher that raises would fail the handshake
            log.exception("checking the TLS files failed; the certificate in force is kept")
        with self._lock:
            if self._handed is self.loaded:
                return None
            self._handed = self.loaded
            return self.loaded.configuration

    def check(self) -> bool:
        """Reloads the files if any changed on disk; True when a new certificate, key or CA
        is now in force. A file that does not load is logged, and the old ones stay."""
        with self._lock:
            stamps = self._stamp()
            if stamps == self._stamps:
                return False
            self._stamps = stamps
            try:
                loaded = self._load()
            except TlsFileError as error:
                self.failures += 1
                log.error("TLS files changed but cannot be used (%s); still serving the "
                          "certificate loaded before", error)
                return False
            if (loaded.cert, loaded.key, loaded.client_ca) == (
                    self.loaded.cert, self.loaded.key, self.loaded.client_ca):
                return False
            self.loaded = loaded
            self.reloads += 1
        log.info("reloaded the TLS certificate from %s", self.tls.cert)
        for listener in self.on_reload:
            try:
                listener(self.tls)
            except (OSError, ssl.SSLError, ValueError) as error:
                log.error("applying the reloaded TLS files failed: %s", error)
        return True

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        paths = (self.tls.cert, self.tls.key, self.tls.client_ca)
        return tuple(_stamp(path) if path else None for path in paths)

    def _load(self) -> _Loaded:
        check_key_pair(self.tls.cert, self.tls.key)
        cert, key = _read(self.tls.cert, "certificate"), _read(self.tls.key, "key")
        client_ca = None
        if self.tls.client_ca:
            check_ca(self.tls.client_ca)
            client_ca = _read(self.tls.client_ca, "CA")
        configuration = grpc.ssl_server_certificate_configuration([(key, cert)], client_ca)
        return _Loaded(cert, key, client_ca, configuration)


def check_key_pair(cert: str, key: str) -> None:
    """Raises TlsFileError unless `cert` holds a PEM certificate (chain) and `key` its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for path, what in ((cert, "certificate"), (key, "key")):
        _read(path, what)  # names a missing or unreadable file as such
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise TlsFileError(f"{cert} and {key} are not a PEM certificate and its private key "
                           f"({error.reason or error})") from None


def check_ca(path: str) -> None:
    """Raises TlsFileError unless `path` holds PEM CA certificates."""
    _read(path, "CA")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as error:
        raise TlsFileError(f"{path} holds no PEM CA certificate ({error})") from None
    if not context.get_ca_certs():
        raise TlsFileError(f"{path} holds no PEM CA certificate")


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TlsFileError(f"cannot read the {what} file {path}: "
                           f"{error.strerror or error}") from None
    if b"-----BEGIN" not in data:
        raise TlsFileError(f"the {what} file {path} is not PEM")
    return data


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost (brackets around IPv6 allowed)."""
    bare = host.strip("[]").lower()
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False
