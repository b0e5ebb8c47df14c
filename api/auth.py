"""Regulator authentication: bearer tokens, scoped to the office's jurisdiction."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import ConnDep
from domain.errors import SunlightError
from store.auth import Principal, authenticate

_bearer = HTTPBearer(auto_error=False, description="A regulator token: 'slt_<id>_<secret>'.")


class Unauthorized(SunlightError):
    status = 401
    code = "unauthorized"


def current_regulator(
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("this endpoint needs 'Authorization: Bearer <regulator token>'")
    principal = authenticate(conn, credentials.credentials)
    if principal is None:
        raise Unauthorized("the token is unknown, revoked or malformed")
    return principal


RegulatorDep = Annotated[Principal, Depends(current_regulator)]
