"""Who is calling: the principal of the RPC being served, for the audit trail.

Authentication sets it once per call, before the handler runs, in the call's own task (a
ContextVar, so concurrent calls never see each other's); handlers read it to record who made
each change. Empty when atpd runs without authentication.
"""

from __future__ import annotations

import contextvars

_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("atp_principal", default="")


def current_principal() -> str:
    return _CURRENT.get()


def set_principal(principal: str) -> None:
    """Sets the principal of the call being served (the current task's context)."""
    _CURRENT.set(principal)
