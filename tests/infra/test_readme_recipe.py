"""The README's "Run it by hand" block, run as written on the embedded broker and SQLite.

The block is read out of README.md (so the test and the README cannot drift apart); only its
work folder is moved into the test's temporary folder, and `mbc` on PATH is this checkout's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARK = "<!-- by-hand recipe: tests/infra/test_readme_recipe.py runs the next block as written -->"
WORK = "/tmp/mbc-by-hand"


def recipe() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split(MARK, 1)[1]
    assert after.startswith("\n```bash\n"), "the marker must sit right above the bash block"
    return after.removeprefix("\n```bash\n").split("\n```\n", 1)[0]


@pytest.mark.slow
def test_the_by_hand_recipe_runs_as_written(tmp_path: Path) -> None:
    script = recipe()
    assert script.startswith(f"W={WORK};") and script.count(WORK) == 1
    work = tmp_path / "w"
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "mbc").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "from mbc.cli import main; main()" "$@"\n'
    )
    (shims / "mbc").chmod(0o755)
    env = {
        "PATH": f"{shims}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "MBC_DEVICE": "cpu",
    }
    before = {p.name for p in REPO.iterdir()}
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(WORK, str(work), 1)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(work.glob("*.log")))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + logs
    assert {p.name for p in REPO.iterdir()} == before  # everything went into $W
    out = r.stdout.splitlines()

    # 3. the store holds the 38 clean documents; the stage's books add up
    assert "documents                38" in out, r.stdout
    total = next(line.split() for line in out if line.split()[:1] == ["total"])
    assert total == ["total", "43", "38", "3", "2", "0"]  # raw, accepted, duplicate, rejected, pending
    first = json.loads(next(line for line in out if line.startswith("{")))
    assert (first["event"], first["checkpoint"]) == ("learner starting", "mbc/demo/assets/checkpoint")
    assert first["database"] == f"sqlite:///{work}/memory.db"

    # 4. an answer from the whole memory, and a refusal from a slice that holds nothing
    i = next(n for n, line in enumerate(out) if line.startswith("  from 38 documents ("))
    assert out[i - 1].strip() and not out[i - 1].startswith(("{", " ")), r.stdout  # the answer itself
    assert out[i].endswith("; checkpoint mbc/demo/assets/checkpoint")
    assert out[i + 1] == "  cites (the whole slice's documents, by attention mass):"
    cited = [line for line in out[i + 2 : i + 11] if line.startswith("    ")]
    assert len(cited) == 9 and cited[-1].endswith("%  the other documents of the slice")  # 8 + the rest
    assert out[i + 2 + len(cited)] == "exit code 3"
    assert (
        "no answer: no stored document is in this slice (source 'no-such-source'): nothing to answer from"
        in r.stderr.splitlines()
    )

    # 5. the growth view, by plain SQL: every document counted once, 3 bytes of codes each
    header = next(n for n, line in enumerate(out) if line.startswith("bucket "))
    rows = [line.split() for line in out[header + 2 :] if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert rows and sum(int(row[2]) for row in rows) == 38
    assert rows[-1][3:6] == ["38", "114", "19456"]  # cumulative documents, code bytes, float bytes
