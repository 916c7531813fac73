"""`mbc store …` commands on both backends, and `mbc store serve` as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mbc.cli import app
from memory_store.store import MemoryStore
from tests.mbc_process import MBC
from tests.memory_store.helpers import codebook, random_docs

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def mbc(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def test_store_commands(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBC_INDEX_DIR", str(tmp_path / "faiss"))
    assert "empty -> 0006_text_sketch" in mbc("store", "migrate", "--database-url", db_url)
    assert "0006_text_sketch -> 0006_text_sketch" in mbc("store", "migrate", "--database-url", db_url)
    with MemoryStore(db_url) as store:
        v = store.add_codebook_version(codebook())
        store.write_batch(random_docs(40, v))
    stats = json.loads(mbc("store", "stats", "--database-url", db_url, "--json"))
    assert (stats["documents"], stats["code_bytes"], stats["float_equivalent_bytes"]) == (
        40,
        560,
        40 * 12 * 16 * 4,
    )
    assert stats["database"].split(":")[0] == db_url.split(":")[0]
    counts = json.loads(mbc("store", "counts", "--database-url", db_url, "--json", "--source", "src0"))
    assert sum(c["n"] for c in counts) == 14 * 12  # ids 0, 3, …, 39
    assert "memory_growth_daily" in mbc("store", "views")
    daily = json.loads(mbc("store", "views", "memory_growth_daily", "--database-url", db_url, "--json"))
    assert [d["documents"] for d in daily] == [40]
    assert "documents" in mbc("store", "views", "source_activity", "--database-url", db_url)
    assert "deleted 2 of 3" in mbc("store", "delete", "d1", "d2", "nope", "--database-url", db_url)
    assert "codebook v1" in mbc("store", "reindex", "--database-url", db_url)
    assert (tmp_path / "faiss" / "codebook-v1.faiss").exists()
    refused = runner.invoke(app, ["store", "downgrade", "base", "--database-url", db_url])
    assert refused.exit_code != 0 and "--yes" in refused.output
    assert "0006_text_sketch -> empty" in mbc("store", "downgrade", "base", "--database-url", db_url, "--yes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_reader_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cmd = [*MBC, "store", "serve", "--database-url", url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBC_API")}
    env.update({"PYTHONPATH": str(REPO), "MBC_AUTO_MIGRATE": "1", "MBC_LOG_JSON": "1"})
    for extra in ([], ["--host", "0.0.0.0"]):
        refused = subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines() == [
            "error: the reader service needs a token: set MBC_API_READ_TOKEN (read scope) and/or "
            "MBC_API_ADMIN_TOKEN (admin scope), or api_read_token / api_admin_token in [store]"
        ]
    old = subprocess.run(cmd, env={**env, "MBC_API_TOKEN": "t"}, capture_output=True, text=True, timeout=60)
    assert old.returncode == 2 and "(MBC_API_TOKEN is no longer read)" in old.stderr

    port = _free_port()
    env["MBC_API_READ_TOKEN"] = "tok"
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "backend": "sqlite"}
        assert httpx.get(f"http://127.0.0.1:{port}/stats").status_code == 401
        stats = httpx.get(f"http://127.0.0.1:{port}/stats", headers={"Authorization": "Bearer tok"})
        assert stats.json()["documents"] == 0
        gone = httpx.delete(f"http://127.0.0.1:{port}/documents/x", headers={"Authorization": "Bearer tok"})
        assert gone.status_code == 403
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    start = next(json.loads(line) for line in err.splitlines() if "reader service starting" in line)
    assert (start["scopes"], start["auth"]) == (["read"], "bearer-token scopes enabled: read")
