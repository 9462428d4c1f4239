"""Who may do what: the role each RPC needs, principals, the policy file, the interceptor.

- `METHOD_ROLES` is the one table: every RPC atpd serves, by full method name, and the role it
  needs (`OPEN` for health checks, `ANY_ROLE` for what any principal with a role may call:
  GetServerInfo). A test walks the descriptors of every service atpd registers and fails on
  any method missing here, so a new RPC cannot slip in unprotected.
- Roles are ordered: admin ⊇ ops ⊇ service ⊇ reader. `replica` (member-to-member replication)
  stands beside them: only admin includes it, and it includes nothing else.
- A principal is who the caller is: the bearer token's principal (`authorization: Bearer T`,
  looked up by the token's SHA-256 in the `--auth-tokens` file), else the client
  certificate's names as gRPC's authorization policy (A43) matches them: its URI SANs, or if
  none its DNS SANs, or if none its subject CN.
- The `--auth-policy` file maps principals to roles: deny rules first, then allow rules, and
  by default nothing. Both files are re-read when they change (checked at most once a second);
  a file that no longer parses is logged and the previous one kept.
- `Authorization` is the interceptor: a call without credentials, or with a token it does not
  know, fails UNAUTHENTICATED; a principal without the role fails PERMISSION_DENIED with an
  ErrorInfo (reason PERMISSION_DENIED, metadata role_needed and principal). Either way before
  the handler runs, so a refused call changes nothing. Handlers (and later the journal) learn
  the caller through `current_principal()`.
- With `atpd --gateways N` the gateways run `Authorization` on the public port; a call a
  gateway forwards to the writer carries the caller's principal in `PRINCIPAL_KEY` metadata
  (`principal_metadata`), which the gateway strips from every client's own metadata, and
  which only the writer's `TrustedPrincipal` reads: the writer serves nothing but a private
  Unix socket in a directory only its user may enter, so whoever reaches it is a gateway.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from atp.ledger.errors import PERMISSION_DENIED, UNAUTHENTICATED
from atp.server.handlers import Behaviour, rebuilt, responses_of
from atp.server.status import DOMAIN, trailing_metadata
from atp.v1 import reservations_pb2

log = logging.getLogger("atp.server")
T = TypeVar("T")

READER, SERVICE, OPS, REPLICA, ADMIN = "reader", "service", "ops", "replica", "admin"
ROLES = (READER, SERVICE, OPS, REPLICA, ADMIN)
# The roles each role includes (itself too).
INCLUDES: dict[str, frozenset[str]] = {
    READER: frozenset({READER}),
    SERVICE: frozenset({READER, SERVICE}),
    OPS: frozenset({READER, SERVICE, OPS}),
    REPLICA: frozenset({REPLICA}),
    ADMIN: frozenset(ROLES),
}
# Needs no credentials at all.
OPEN = "open"
# Needs a principal with any role at all (replica too): what the server is, not what it holds.
ANY_ROLE = "any"

_INVENTORY, _AVAILABILITY = "/atp.v1.Inventory/", "/atp.v1.Availability/"
_RESERVATIONS, _EVENTS = "/atp.v1.Reservations/", "/atp.v1.Events/"
_REPLICATION = "/atp.v1.Replication/"
_SERVER = "/atp.v1.Server/"
_ALLOCATIONS = "/atp.v1.Allocations/"
_HEALTH = "/grpc.health.v1.Health/"
_REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/"
_REFLECTION_V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/"

# The role each RPC needs, by its full method name.
METHOD_ROLES: dict[str, str] = {
    # Reads: what the ledger holds, promises (which change nothing), the journal.
    _AVAILABILITY + "GetAvailability": READER,
    _AVAILABILITY + "Promise": READER,
    _INVENTORY + "ListNodes": READER,
    _INVENTORY + "ListSupply": READER,
    _INVENTORY + "ListHolds": READER,
    _RESERVATIONS + "GetReservation": READER,
    _RESERVATIONS + "ListReservations": READER,
    _EVENTS + "Watch": READER,
    _ALLOCATIONS + "GetAllocationPolicy": READER,
    _ALLOCATIONS + "ListAllocationPolicies": READER,
    _ALLOCATIONS + "ExplainAllocation": READER,
    _ALLOCATIONS + "ListChannelAllocations": READER,
    # A capture service's writes: the life of a reservation.
    _RESERVATIONS + "Reserve": SERVICE,
    _RESERVATIONS + "ReserveBatch": SERVICE,
    _RESERVATIONS + "ReserveStream": SERVICE,
    _RESERVATIONS + "Commit": SERVICE,
    _RESERVATIONS + "Extend": SERVICE,
    _RESERVATIONS + "Release": SERVICE,
    _RESERVATIONS + "Fulfill": SERVICE,
    # What reached the customer: recorded by the delivery/carrier integration.
    _RESERVATIONS + "RecordDelivery": SERVICE,
    # Operations: stock, nodes, supply, holds, re-sourcing (a dry run: see READ_ONLY_FORMS).
    _INVENTORY + "UpsertNode": OPS,
    _INVENTORY + "AdjustStock": OPS,
    _INVENTORY + "SetSafetyStock": OPS,
    _INVENTORY + "UpsertSupply": OPS,
    _INVENTORY + "ReceiveSupply": OPS,
    _INVENTORY + "PlaceHold": OPS,
    _INVENTORY + "ReleaseHold": OPS,
    _RESERVATIONS + "Reallocate": OPS,
    # Planners' rules: who gets scarce stock.
    _ALLOCATIONS + "SetAllocationPolicy": OPS,
    _ALLOCATIONS + "SetChannelAllocation": OPS,
    # The cluster: its status is an operator's view (atpctl cluster status); streaming the
    # store's batches or a whole snapshot of it is for members only.
    _REPLICATION + "Status": OPS,
    _REPLICATION + "Replicate": REPLICA,
    _REPLICATION + "Snapshot": REPLICA,
    # The server's version, defaults and limits: every client reads them to size its requests.
    _SERVER + "GetServerInfo": ANY_ROLE,
    # Health answers probes and load balancers, which carry no credentials; it tells nothing
    # but SERVING or not (List: the names of the services it reports on).
    _HEALTH + "Check": OPEN,
    _HEALTH + "Watch": OPEN,
    _HEALTH + "List": OPEN,
    # Reflection describes the (public) API, to any caller who is somebody.
    _REFLECTION_V1 + "ServerReflectionInfo": READER,
    _REFLECTION_V1ALPHA + "ServerReflectionInfo": READER,
}


def _is_dry_run(request: Any) -> bool:
    if isinstance(request, bytes):  # a gateway's forwarded call: not decoded for the writer
        try:
            request = reservations_pb2.ReallocateRequest.FromString(request)
        except DecodeError:
            return False  # the writer refuses it INVALID_ARGUMENT, if the caller may write
    return getattr(request, "dry_run", False) is True


# Requests that only read, of a method whose table role is for its writing form: the role
# such a request needs instead. A Reallocate dry run computes a plan and changes nothing; it
# shows what GetAvailability and ListReservations(at_risk) already show a reader, so a
# routing service with the reader role may ask for plans (applying one needs ops). Each
# test takes the decoded request, or its bytes (on a gateway, which forwards them as bytes).
READ_ONLY_FORMS: dict[str, tuple[Callable[[Any], bool], str]] = {
    _RESERVATIONS + "Reallocate": (_is_dry_run, READER),
}

AUTHORIZATION_KEY = "authorization"
BEARER = "bearer "
PERMISSION_DENIED_REASON = PERMISSION_DENIED
UNAUTHENTICATED_REASON = UNAUTHENTICATED
ANY_PRINCIPAL = "*"
# The metadata in which a gateway of `atpd --gateways N` names the caller of a call it
# forwards to the writer (binary: a principal is any UTF-8 text). Trusted by the writer only.
PRINCIPAL_KEY = "atp-principal-bin"
# The source of a principal the writer learned from its gateway.
FROM_GATEWAY = "gateway"
# A changed file is noticed within this many seconds.
RELOAD_INTERVAL_S = 1.0


def role_needed(method: str, request: Any = None) -> str | None:
    """The role a call needs (OPEN for none), or None for a method the table lacks."""
    role = METHOD_ROLES.get(method)
    form = READ_ONLY_FORMS.get(method)
    if form is not None and request is not None and form[0](request):
        return form[1]
    return role


def hash_token(token: str) -> str:
    """What the tokens file stores for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


# How long a refused stream call waits for the client's first message before it is ended.
OPENING_MESSAGE_WAIT_S = 1.0


async def _opening_message(requests: Any) -> None:
    """Lets a client's first write on a refused stream land before the refusal ends the call:
    ended while that write is in flight, grpc's client may report INTERNAL ("Internal error
    from Core") instead of the refusal."""
    try:
        async with asyncio.timeout(OPENING_MESSAGE_WAIT_S):
            await anext(aiter(requests), None)
    except (TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass


# ---------------------------------------------------------------------------------------------
# Principals


@dataclass(frozen=True)
class Principal:
    """Who made a call: `name` is the one to show (the token's principal, the certificate's
    first URI SAN, DNS SAN or CN); `names` are all those a policy rule may match."""

    name: str
    names: tuple[str, ...]
    source: str  # "token" or "certificate"
    roles: frozenset[str] = frozenset()


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "atp_principal", default=None)


def current_principal() -> Principal | None:
    """The principal of the call being handled (None without --auth-policy, or outside a
    call)."""
    return _current.get()


def caller_name() -> str:
    """The name of the call's principal, as the journal records it ("" without one)."""
    principal = _current.get()
    return principal.name if principal is not None else ""


def certificate_names(auth_context: Mapping[str, Sequence[bytes]]) -> tuple[str, ...]:
    """A client certificate's names as A43 matches them: its URI SANs, else its DNS SANs,
    else its subject's common name (empty without a client certificate)."""
    for key in ("peer_uri", "peer_dns", "x509_common_name"):
        names = tuple(value.decode(errors="replace") for value in auth_context.get(key, ()))
        if names:
            return names
    return ()


# ---------------------------------------------------------------------------------------------
# The files


class AuthFileError(ValueError):
    """A tokens or policy file that cannot be used (unreadable, not JSON, wrong shape)."""


@dataclass(frozen=True)
class Policy:
    """Deny rules (principal patterns), then allow rules (role, principal patterns)."""

    deny: tuple[tuple[str, ...], ...]
    allow: tuple[tuple[str, tuple[str, ...]], ...]

    def roles_of(self, names: Iterable[str]) -> frozenset[str] | None:
        """Every role the principal has (with the roles each includes); None if denied."""
        names = tuple(names)
        if any(_matches(patterns, names) for patterns in self.deny):
            return None
        roles: set[str] = set()
        for role, patterns in self.allow:
            if _matches(patterns, names):
                roles |= INCLUDES[role]
        return frozenset(roles)


def _matches(patterns: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """True when a pattern matches a name: `*` any, `prefix*` by prefix, else exactly."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if any(name.startswith(pattern[:-1]) for name in names):
                return True
        elif pattern in names:
            return True
    return False


def parse_policy(text: str) -> Policy:
    """A policy file: {"deny": [{"principals": [...]}],
    "allow": [{"role": "service", "principals": [...]}]}."""
    document = _object(_json(text), "the policy", {"deny", "allow"})
    deny = []
    for index, rule in enumerate(_list(document.get("deny", []), "deny")):
        fields = _object(rule, f"deny[{index}]", {"principals"})
        deny.append(_principals(fields, f"deny[{index}]"))
    allow = []
    for index, rule in enumerate(_list(document.get("allow", []), "allow")):
        fields = _object(rule, f"allow[{index}]", {"role", "principals"})
        role = fields.get("role")
        if role not in ROLES:
            raise AuthFileError(f"allow[{index}].role is {role!r}; expected one of "
                                f"{', '.join(ROLES)}")
        allow.append((str(role), _principals(fields, f"allow[{index}]")))
    return Policy(tuple(deny), tuple(allow))


def parse_tokens(text: str) -> dict[str, str]:
    """A tokens file: {"tokens": [{"sha256": "<64 hex digits>", "principal": "name"}]};
    returned as hash -> principal."""
    document = _object(_json(text), "the tokens file", {"tokens"})
    tokens: dict[str, str] = {}
    for index, entry in enumerate(_list(document.get("tokens", []), "tokens")):
        fields = _object(entry, f"tokens[{index}]", {"sha256", "principal"})
        digest, principal = fields.get("sha256"), fields.get("principal")
        if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise AuthFileError(f"tokens[{index}].sha256 is not 64 hex digits (a token's "
                                "SHA-256: atpctl auth hash-token)")
        if not isinstance(principal, str) or not principal.strip():
            raise AuthFileError(f"tokens[{index}].principal must be a non-empty string")
        if digest.lower() in tokens:
            raise AuthFileError(f"tokens[{index}]: the same token hash appears twice")
        tokens[digest.lower()] = principal
    return tokens


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise AuthFileError(f"not JSON: {error}") from None


def _object(value: Any, what: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AuthFileError(f"{what} must be a JSON object")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise AuthFileError(f"{what} has unknown keys {unknown}; expected {sorted(keys)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise AuthFileError(f"{what} must be a JSON list")
    return value


def _principals(fields: dict[str, Any], what: str) -> tuple[str, ...]:
    principals = fields.get("principals")
    if (not isinstance(principals, list) or not principals
            or not all(isinstance(name, str) and name for name in principals)):
        raise AuthFileError(f"{what}.principals must be a non-empty list of non-empty strings")
    return tuple(principals)


def load_policy(path: str) -> Policy:
    return parse_policy(_read(path))


def load_tokens(path: str) -> dict[str, str]:
    return parse_tokens(_read(path))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise AuthFileError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
                            ) from None


class Reloading(Generic[T]):
    """A file's parsed content, re-read when the file changes (checked at most once per
    `interval_s`); a change that does not parse is logged and the previous content kept."""

    def __init__(self, path: str, parse: Callable[[str], T], what: str,
                 interval_s: float = RELOAD_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self._parse, self._what = path, parse, what
        self._interval_s, self._clock = interval_s, clock
        self._stamp = self._stat()
        self.value: T = parse(_read(path))  # raises AuthFileError at start
        self._checked = clock()

    def current(self) -> T:
        now = self._clock()
        if now - self._checked >= self._interval_s:
            self._checked = now
            self._reload_if_changed()
        return self.value

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _reload_if_changed(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.value = self._parse(_read(self.path))
        except AuthFileError as error:
            log.error("the %s %s changed but cannot be used (%s); the previous one stays in "
                      "force", self._what, self.path, error)
            return
        log.info("reloaded the %s %s", self._what, self.path)


# ---------------------------------------------------------------------------------------------
# The interceptor


class Refusal(Exception):
    """Why a call may not go on: its status code and google.rpc.Status."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 metadata: Mapping[str, str]) -> None:
        super().__init__(message)
        self.code = code
        self.status = status_pb2.Status(code=code.value[0], message=message)
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN,
                                                metadata=dict(metadata)))
        self.status.details.append(packed)

    async def abort(self, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort(self.code, self.status.message,
                            trailing_metadata=trailing_metadata(self.status))
        raise AssertionError("context.abort raises")


class Authorization(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Enforces the policy on every call before its handler runs (see the module docstring)."""

    def __init__(self, policy_path: str, tokens_path: str = "",
                 interval_s: float = RELOAD_INTERVAL_S) -> None:
        self.policy = Reloading(policy_path, parse_policy, "policy file", interval_s)
        self.tokens: Reloading[dict[str, str]] | None = (
            Reloading(tokens_path, parse_tokens, "tokens file", interval_s)
            if tokens_path else None)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or METHOD_ROLES.get(method) == OPEN:
            return handler
        metadata = handler_call_details.invocation_metadata or ()

        def enforced(kind: str, behaviour: Behaviour) -> Behaviour:
            return self._enforced(method, metadata, kind, behaviour)

        return rebuilt(handler, enforced)

    def _enforced(self, method: str, metadata: Any, kind: str,
                  behaviour: Behaviour) -> Behaviour:
        """`behaviour`, run only for an authorized caller, with its principal set. A unary
        request is at hand before the call runs (a Reallocate dry run is a read)."""
        request_first = kind.startswith("unary")

        async def enforced(request_or_stream: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = self.authorize(method, metadata, context.auth_context(),
                                           request_or_stream if request_first else None)
            except Refusal as refusal:
                if not request_first:
                    await _opening_message(request_or_stream)
                await refusal.abort(context)
            _current.set(principal)
            if kind.endswith("_unary"):  # one answer
                return await behaviour(request_or_stream, context)
            return await responses_of(behaviour, request_or_stream, context)

        return enforced

    def authorize(self, method: str, metadata: Iterable[tuple[str, Any]],
                  auth_context: Mapping[str, Sequence[bytes]], request: Any = None,
                  ) -> Principal:
        """The caller, allowed to make this call; raises Refusal otherwise."""
        principal = self.authenticate(metadata, auth_context)
        needed = role_needed(method, request)
        roles = self.policy.current().roles_of(principal.names)
        principal = Principal(principal.name, principal.names, principal.source,
                              roles or frozenset())
        if needed == OPEN:
            return principal
        details = {"role_needed": needed or ADMIN, "principal": principal.name}
        if roles is None:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED_REASON,
                          f"{principal.name} is denied by the policy", details)
        if needed == ANY_ROLE:
            if roles:
                return principal
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED_REASON,
                          f"{method.rsplit('/', 1)[-1]} needs a role, and {principal.name} "
                          "has none", details)
        if (needed or ADMIN) not in roles:  # a method missing from the table: admin only
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED_REASON,
                          f"{method.rsplit('/', 1)[-1]} needs the role {needed or ADMIN}, "
                          f"which {principal.name} does not have", details)
        return principal

    def authenticate(self, metadata: Iterable[tuple[str, Any]],
                     auth_context: Mapping[str, Sequence[bytes]]) -> Principal:
        """The caller by its bearer token, else by its client certificate."""
        header = next((value for key, value in metadata if key == AUTHORIZATION_KEY), None)
        if header is not None:
            return self._token_principal(header if isinstance(header, str) else "")
        names = certificate_names(auth_context)
        if names:
            return Principal(names[0], names, "certificate")
        raise _unauthenticated("no credentials: send 'authorization: Bearer TOKEN' or a "
                               "client certificate")

    def _token_principal(self, header: str) -> Principal:
        if not header[:len(BEARER)].lower() == BEARER or not header[len(BEARER):].strip():
            raise _unauthenticated("the authorization metadata is not 'Bearer TOKEN'")
        tokens = self.tokens.current() if self.tokens is not None else {}
        name = tokens.get(hash_token(header[len(BEARER):].strip()))
        if name is None:
            raise _unauthenticated("the bearer token is not known")
        return Principal(name, (name,), "token")


def _unauthenticated(message: str) -> Refusal:
    return Refusal(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_REASON, message, {})


# ---------------------------------------------------------------------------------------------
# Behind gateways


def principal_metadata() -> tuple[tuple[str, bytes], ...]:
    """The metadata naming the current call's principal to the writer (none without one)."""
    principal = _current.get()
    if principal is None:
        return ()
    return ((PRINCIPAL_KEY, principal.name.encode()),)


def without_principal(metadata: Iterable[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """A client's metadata less any principal it claims: only a gateway may name one."""
    return tuple((key, value) for key, value in metadata if key != PRINCIPAL_KEY)


def trusted_principal(metadata: Iterable[tuple[str, Any]]) -> Principal | None:
    """The principal a gateway named in `metadata` (None: it named none)."""
    for key, value in metadata:
        if key == PRINCIPAL_KEY:
            name = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            return Principal(name, (name,), FROM_GATEWAY)
    return None


class TrustedPrincipal(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """The writer of `atpd --gateways N` with --auth-policy: its gateways have authorized
    each call already, and name its caller in PRINCIPAL_KEY; this sets that principal for
    the handler (and so the journal). Installed only on the writer's private Unix socket."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        principal = trusted_principal(handler_call_details.invocation_metadata or ())
        if handler is None or principal is None:
            return handler

        def as_principal(kind: str, behaviour: Behaviour) -> Behaviour:
            async def named(request_or_stream: Any, context: grpc.aio.ServicerContext) -> Any:
                _current.set(principal)
                if kind.endswith("_unary"):
                    return await behaviour(request_or_stream, context)
                return await responses_of(behaviour, request_or_stream, context)

            return named

        return rebuilt(handler, as_principal)
