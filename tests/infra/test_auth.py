"""infra.auth: the one bearer-token check (scopes, 401/403) and the loopback rule."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from infra.auth import ScopedTokens, check_bind, is_loopback
from infra.errors import ConfigError


def _app(tokens: ScopedTokens) -> TestClient:
    app = FastAPI()

    @app.get("/read", dependencies=[Depends(tokens.require("read"))])
    def read() -> str:
        return "r"

    @app.get("/admin", dependencies=[Depends(tokens.require("admin"))])
    def admin() -> str:
        return "a"

    return TestClient(app)


def test_scopes_401_and_403() -> None:
    tokens = ScopedTokens(
        {"read": SecretStr("r-tok"), "admin": "a-tok"}, implies={"admin": frozenset({"read"})}
    )
    client = _app(tokens)
    bearer = {t: {"Authorization": f"Bearer {t}"} for t in ("r-tok", "a-tok", "nope", "")}
    assert client.get("/read", headers=bearer["r-tok"]).json() == "r"
    assert client.get("/read", headers=bearer["a-tok"]).json() == "r"
    assert client.get("/admin", headers=bearer["a-tok"]).json() == "a"
    r = client.get("/admin", headers=bearer["r-tok"])
    assert (r.status_code, r.json()) == (403, {"detail": "this token lacks the admin scope"})
    for headers in (
        {},
        bearer["nope"],
        bearer[""],
        {"Authorization": "Basic eDp5"},
        {"Authorization": "r-tok"},
    ):
        r = client.get("/read", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
    assert tokens.scopes_of("a-tok") == {"admin", "read"} and tokens.scopes_of("a-to") == set()
    assert (
        tokens.enabled == ["read", "admin"]
        and tokens.describe() == "bearer-token scopes enabled: read, admin"
    )


def test_unset_scopes_open_services_and_duplicates() -> None:
    partial = ScopedTokens({"read": "r-tok", "admin": None})
    assert partial.enabled == ["read"] and not partial.open
    assert _app(partial).get("/admin", headers={"Authorization": "Bearer r-tok"}).status_code == 403
    open_ = ScopedTokens({"read": None, "admin": SecretStr("")})
    assert open_.open and open_.describe() == "no authentication (no token configured)"
    assert _app(open_).get("/admin").json() == "a"
    with pytest.raises(ConfigError, match="must differ"):
        ScopedTokens({"read": "same", "admin": "same"})
    with pytest.raises(ValueError, match="unknown scope"):
        partial.require("write")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_bind() -> None:
    check_bind("0.0.0.0", ScopedTokens({"ask": "t"}), "set X")
    check_bind("127.0.0.1", ScopedTokens({"ask": None}), "set X")
    with pytest.raises(ConfigError) as e:
        check_bind("0.0.0.0", ScopedTokens({"ask": None}), "set MBC_X")
    assert str(e.value) == "refusing to listen on 0.0.0.0 without a token: set MBC_X"
