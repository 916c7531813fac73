"""`mbc train` on two CPU processes (torchrun, gloo): sharding, equivalence with one process,
and checkpoints that resume on the other process count.

One process with grad_accum 2 and two processes with grad_accum 1 take the same optimizer steps
over the same global micro-batches (each micro-batch is its own memory bank, so a 2·b batch on one
process would be a different computation: grad accumulation is the equivalent). The tiny preset
has no dropout, backprop dropout keeps a fixed slice, initialisation and warm-up are seeded, and
the codebook is updated once per step from all micro-batches, so the runs must agree.

Tolerance: TOL = 1e-5 on every weight, codebook buffer and Adam moment. One Adam step at the
learning rate used moves weights by about 1e-3, so any difference in data or update order shows
up two orders of magnitude above TOL, while float32 rounding from summing the same gradients in
another order (e.g. grad_accum 2 × 2 processes) stays near 1e-7 relative. With the settings here
the sums happen in the same order and the runs measured bitwise equal (0.0).

Launched as ``python -m torch.distributed.run --standalone --nproc_per_node 2 <venv>/bin/mbc
train ...``. (``accelerate launch --cpu --num_processes 2`` starts only one process unless it is
given an MPI hostfile.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from learner.data.synth.generator import SynthConfig, write_all
from learner.errors import ConfigValueError
from learner.model.config import TrainConfig
from learner.training.sampling import shard_batches
from learner.training.spec import keep_global_batch

TOL = 1e-5
STEPS = 4  # one epoch: 32 examples, micro-batches of 4, 2 micro-batches per optimizer step
HALF = 2  # where the interrupted runs stop and save `last`
# Rendezvous and rank variables of an enclosing launcher must not leak into the runs.
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch built without gloo")


def _mbc_script() -> str:
    script = Path(sys.executable).with_name("mbc")
    found = str(script) if script.is_file() else shutil.which("mbc")
    assert found, "the `mbc` console script is not installed next to the interpreter"
    return found


def _mbc(args: list[str], processes: int) -> dict[str, Any]:
    """Run `mbc ARGS` on ``processes`` CPU processes; the final JSON report (printed by rank 0 only)."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env |= {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # same threads everywhere: same kernels
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        if processes > 1
        else []
    )
    r = subprocess.run(
        [*launcher, _mbc_script(), *args], capture_output=True, text=True, env=env, timeout=400
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    reports = [line for line in r.stdout.splitlines() if line.startswith('{"run_dir"')]
    assert len(reports) == 1, r.stdout  # one report: only the main process prints
    return json.loads(reports[0])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_all(
        SynthConfig(pretrain_docs=8, train_docs=32, val_docs=8, test_docs=8, bank_size=8, relations=1), out
    )
    return out


def _train(data: Path, run: Path, processes: int, *extra: str) -> dict[str, Any]:
    """Two micro-batches of 4 per optimizer step: 2 processes × grad_accum 1 or 1 × grad_accum 2."""
    args = ["train", "--preset", "tiny", "--train", str(data / "train.csv"), "--val", str(data / "val.csv")]
    args += ["--run-dir", str(run), "--batch-size", "4", "--grad-accum", str(2 // processes)]
    args += ["--epochs", "1", "--retrieval-warmup", "2", "--no-progress", "--trace-batches", *extra]
    return _mbc(args, processes)


def _resume(run: Path, data: Path, processes: int) -> dict[str, Any]:
    args = ["train", "--train", str(data / "train.csv"), "--val", str(data / "val.csv")]
    return _mbc([*args, "--run-dir", str(run), "--resume", "--no-progress", "--trace-batches"], processes)


@pytest.fixture(scope="module")
def one_full(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("one-full") / "run"
    assert _train(data, run, 1)["step"] == STEPS
    return run


@pytest.fixture(scope="module")
def one_half(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("one-half") / "run"
    assert _train(data, run, 1, "--max-steps", str(HALF))["step"] == HALF
    return run


@pytest.fixture(scope="module")
def two_half(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("two-half") / "run"
    assert _train(data, run, 2, "--max-steps", str(HALF))["step"] == HALF
    return run


def _trace(run: Path, processes: int | None = None) -> list[dict[str, Any]]:
    """Trace records of the run (only those written by ``processes`` processes, if given)."""
    records = [
        json.loads(line) for path in sorted((run / "trace").glob("rank*.jsonl")) for line in path.open()
    ]
    return [r for r in records if processes is None or r["processes"] == processes]


def _steps(records: list[dict[str, Any]]) -> dict[int, dict[int, list[str]]]:
    """step -> {global micro-batch index -> example ids}; a micro-batch seen twice is an error."""
    steps: dict[int, dict[int, list[str]]] = defaultdict(dict)
    for r in records:
        assert r["micro"] not in steps[r["step"]], f"micro-batch {r['micro']} trained twice"
        steps[r["step"]][r["micro"]] = r["qa_ids"]
    return dict(steps)


def _checkpoint(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    last = run / "checkpoints" / "last"
    weights = load_file(str(last / "model.safetensors"))
    opt = torch.load(last / "optimizer.pt", weights_only=False)["optimizer"]["state"]
    return weights, opt, json.loads((last / "trainer_state.json").read_text())


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def _max_adam_diff(a: dict[Any, Any], b: dict[Any, Any]) -> float:
    assert a.keys() == b.keys()
    return max(
        float((a[i][m].double() - b[i][m].double()).abs().max()) for i in a for m in ("exp_avg", "exp_avg_sq")
    )


def test_shards_interleave_and_resuming_keeps_the_global_batch() -> None:
    batches = [np.array([i]) for i in range(7)]
    assert [int(b[0]) for b in shard_batches(batches, 0, 2)] == [0, 2, 4]  # batch 6: no partner
    assert [int(b[0]) for b in shard_batches(batches, 1, 2)] == [1, 3, 5]
    assert [int(b[0]) for b in shard_batches(batches, 0, 1)] == list(range(7))
    assert keep_global_batch(TrainConfig(grad_accum=1), 2, 1).grad_accum == 2
    assert keep_global_batch(TrainConfig(grad_accum=4), 1, 2).grad_accum == 2
    with pytest.raises(ConfigValueError, match="cannot be split over 2 processes"):
        keep_global_batch(TrainConfig(grad_accum=3), 1, 2)


@pytest.mark.slow
def test_the_two_processes_train_on_different_micro_batches(two_half: Path) -> None:
    by_rank: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in _trace(two_half):
        by_rank[r["rank"]].append(r)
    assert sorted(by_rank) == [0, 1]
    for rank, records in by_rank.items():
        assert [r["step"] for r in records] == [1, 2]  # one micro-batch per process per step
        assert [r["micro"] for r in records] == [rank, rank + 2]  # global index i·2 + rank
        assert all(r["processes"] == 2 and len(r["qa_ids"]) == 4 for r in records)
    seen = [{i for r in by_rank[rank] for i in r["qa_ids"]} for rank in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 8 and not seen[0] & seen[1]


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one(two_half: Path, one_half: Path, one_full: Path) -> None:
    # the same global micro-batches in every step
    assert _steps(_trace(two_half)) == _steps(_trace(one_half))
    w2, adam2, state2 = _checkpoint(two_half)
    w1, adam1, state1 = _checkpoint(one_half)
    for state, processes in ((state1, 1), (state2, 2)):
        assert state["processes"] == processes
        assert (state["step"], state["batch_in_epoch"], state["examples"]) == (HALF, 2 * HALF, 8 * HALF)
    weight_diff, adam_diff = _max_diff(w1, w2), _max_adam_diff(adam1, adam2)
    print(f"max |w(1 process) - w(2 processes)| = {weight_diff:.3g}, Adam moments {adam_diff:.3g}")
    assert weight_diff <= TOL and adam_diff <= TOL
    # what the tolerance is up against: two more steps move the weights by far more
    assert _max_diff(w1, _checkpoint(one_full)[0]) > 100 * TOL


@pytest.mark.slow
@pytest.mark.parametrize("saved_on, resumed_on", [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_the_other_process_count(
    saved_on: int,
    resumed_on: int,
    data: Path,
    two_half: Path,
    one_half: Path,
    one_full: Path,
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    shutil.copytree(two_half if saved_on == 2 else one_half, run)
    report = _resume(run, data, resumed_on)
    assert report["step"] == STEPS and report["finished"] and report["processes"] == resumed_on
    # it went on from step 3 with the uninterrupted run's micro-batches, none repeated or skipped
    after = _steps(_trace(run, resumed_on))
    assert sorted(after) == [3, 4]
    reference = _steps(_trace(one_full))
    assert after == {s: reference[s] for s in (3, 4)}
    # and ended where the uninterrupted one-process run ended
    w, adam, state = _checkpoint(run)
    w_ref, adam_ref, state_ref = _checkpoint(one_full)
    assert state["examples"] == state_ref["examples"] == 8 * STEPS
    weight_diff, adam_diff = _max_diff(w, w_ref), _max_adam_diff(adam, adam_ref)
    print(f"{saved_on} -> {resumed_on} processes: max weight diff {weight_diff:.3g}, Adam {adam_diff:.3g}")
    assert weight_diff <= TOL and adam_diff <= TOL
    assert state["best_val_loss"] == pytest.approx(state_ref["best_val_loss"], abs=1e-5)
