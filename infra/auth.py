"""The one bearer-token check of the HTTP services (``mbc store serve``, ``mbc ask-serve``).

A service configures one secret per *scope* (e.g. ``read`` and ``admin``); a token may imply other
scopes (the admin token also reads). A route requires one scope:

* no ``Authorization: Bearer <token>`` header, or a token matching no configured secret: **401**
  with ``WWW-Authenticate: Bearer``;
* a valid token whose scopes do not include the route's: **403**.

Tokens are compared with :func:`hmac.compare_digest` against every configured secret (no early
exit), so timing reveals neither the secret nor which scope matched. A service with no secret at
all is open; :func:`check_bind` refuses to serve it anywhere but on a loopback address.

This is the leaf layer: it imports FastAPI, never ``pipeline``, ``learner`` or ``memory_store``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from infra.errors import ConfigError

_bearer = HTTPBearer(auto_error=False, description="a bearer token of the service")


def unauthorized(detail: str = "missing or wrong bearer token") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _digest(token: str) -> bytes:
    # Equal-length inputs for compare_digest: its run time then depends on no part of a token.
    return hashlib.sha256(token.encode()).digest()


def _secret(value: SecretStr | str | None) -> bytes | None:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return _digest(raw) if raw else None


@dataclass(frozen=True)
class ScopedTokens:
    """One secret per scope (None or '' = scope has no token); ``implies`` widens a scope."""

    secrets: Mapping[str, SecretStr | str | None]
    implies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    _tokens: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tokens = {scope: t for scope, v in self.secrets.items() if (t := _secret(v)) is not None}
        if len(set(tokens.values())) < len(tokens):
            raise ConfigError(f"the tokens of scopes {', '.join(sorted(tokens))} must differ")
        object.__setattr__(self, "_tokens", tokens)

    @property
    def enabled(self) -> list[str]:
        """Scopes that have a token, in configuration order."""
        return list(self._tokens)

    @property
    def open(self) -> bool:
        """True when no scope has a token: every route is served without authentication."""
        return not self._tokens

    def scopes_of(self, presented: str) -> frozenset[str]:
        """The scopes ``presented`` grants (empty if it matches no secret); constant-time compare."""
        given = _digest(presented)
        matched = [scope for scope, token in self._tokens.items() if hmac.compare_digest(given, token)]
        granted: set[str] = set()
        for scope in matched:
            granted |= {scope, *self.implies.get(scope, ())}
        return frozenset(granted)

    def require(self, scope: str) -> Callable[[HTTPAuthorizationCredentials | None], None]:
        """A FastAPI dependency admitting requests whose bearer token grants ``scope``."""
        if scope not in self.secrets:
            raise ValueError(f"unknown scope {scope!r}")

        def check(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
            if self.open:
                return
            granted = self.scopes_of(creds.credentials) if creds is not None else frozenset()
            if not granted:
                raise unauthorized()
            if scope not in granted:
                raise HTTPException(403, f"this token lacks the {scope} scope")

        return check

    def describe(self) -> str:
        """One line for the start-up log: which scopes are enabled."""
        if self.open:
            return "no authentication (no token configured)"
        return "bearer-token scopes enabled: " + ", ".join(self.enabled)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (brackets allowed)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: ScopedTokens, how_to_set: str) -> None:
    """Refuse (ConfigError, exit 2) to serve without a token on a non-loopback address."""
    if tokens.open and not is_loopback(host):
        raise ConfigError(f"refusing to listen on {host} without a token: {how_to_set}")
