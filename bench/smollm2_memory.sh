#!/usr/bin/env bash
# The memory-learning chain of issue 19 on one GPU (bench/smollm2_memory.md says how to start it on
# the H200 and what each run is to show). Everything runs in the background; results land in
# $RESULTS (metrics.jsonl of every run, eval summaries, one log per run, chain.log).
#
# Phase 0, alone: bench/profile_pretrain.py (where a step's time goes; picks BIG_BATCH).
# Phase 1, side by side: amortizer pretraining (reconstruct 128-token chunks) with full memory (the
# reference gap) and three G = 4 cosine code-space variants: + continuation objective, 4x batch, and
# in-domain SQuAD train paragraphs; the closed-book floor (KV-LoRA r32 on all 30 layers) trained and
# evaluated. PARAGRAPH=1 adds the paragraph ceiling (55 GB beside the others; F1 55.7 on 2026-12-02).
# Phase 2: QA meta-training from each (half the questions on their own document; one run with all of
# them), then the oracle and bank rows of each on dev part A.
#
# Scale knobs (environment): PRE_MIN, QA_MIN (minutes), PRE_BATCH, QA_BATCH, EVAL_DOCS, PRE_STEPS,
# QA_STEPS (a step cap, for CPU smoke runs), MAX_TEXTS, BASE_EPOCHS, EVAL_CHUNKS, LOG_EVERY, BIG_BATCH, QA_EPOCHS,
# PROFILE_BATCHES, PROFILE_STEPS.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-.data}
BASE=${BASE:-/tmp/base/SmolLM2-135M-Instruct.Q4_1.gguf}
RUNS=${RUNS:-/tmp/runs}
RESULTS=${RESULTS:-/tmp/results}
PRE_MIN=${PRE_MIN:-7}
QA_MIN=${QA_MIN:-9}
PRE_BATCH=${PRE_BATCH:-64}
BIG_BATCH=${BIG_BATCH:-256}
QA_BATCH=${QA_BATCH:-48}
EVAL_DOCS=${EVAL_DOCS:-200}
PRE_STEPS=${PRE_STEPS:-100000}
QA_STEPS=${QA_STEPS:-}
MAX_TEXTS=${MAX_TEXTS:-}
BASE_EPOCHS=${BASE_EPOCHS:-2}
QA_EPOCHS=${QA_EPOCHS:-8}  # an upper bound: QA_MIN stops the run first on the H200
EVAL_BATCH=${EVAL_BATCH:-64}
EVAL_CHUNKS=${EVAL_CHUNKS:-128}
LOG_EVERY=${LOG_EVERY:-50}
mkdir -p "$RUNS" "$RESULTS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mbc() { python3 -c 'from mbc.cli import main; main()' "$@"; }
note() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$RESULTS/chain.log"; }

REUTERS=$DATA/reuters21578.jsonl
[ -f "$REUTERS" ] || { gunzip -c "$REUTERS.gz" > "$RUNS/reuters21578.jsonl" && REUTERS=$RUNS/reuters21578.jsonl; }
TRAIN=$DATA/squad-v1.1-train-part-1.json
DEV=$DATA/squad-v1.1-dev-part-a.json
TEXTS=${MAX_TEXTS:+--max-texts $MAX_TEXTS}
QA_CAP=${QA_STEPS:+--max-steps $QA_STEPS}

pretrain() {  # name, extra args
  local name=$1; shift
  note "start pretrain $name"
  mbc pretrain-amortizer --preset smollm2-135m --base-lm "$BASE" --data "$REUTERS" --format reuters $TEXTS \
    --objective reconstruct --doc-tokens 128 --batch-size "$PRE_BATCH" --lr 3e-4 --warmup-steps 30 \
    --steps "$PRE_STEPS" --log-every "$LOG_EVERY" --eval-chunks "$EVAL_CHUNKS" --max-minutes "$PRE_MIN" --run-dir "$RUNS/$name" \
    --no-progress "$@" > "$RESULTS/$name.log" 2>&1
  note "end pretrain $name rc=$?"
  cp "$RUNS/$name/metrics.jsonl" "$RESULTS/$name.metrics.jsonl" 2>/dev/null
}

evaluate() {  # run name, memory, bank|oracle
  local name=$1 memory=$2 bank=$3
  mbc eval --checkpoint "$RUNS/$name/checkpoints/last" --data "$DEV" --format squad --num-docs "$EVAL_DOCS" \
    --memory "$memory" $([ "$bank" = oracle ] && echo --oracle || echo --no-oracle) --batch-size "$EVAL_BATCH" --bf16 --base-lm "$BASE" --out "$RESULTS/eval-$name" \
    > "$RESULTS/eval-$name-$memory-$bank.log" 2>&1
  note "eval $name $memory $bank rc=$?"
}

baseline() {  # memory (none | paragraph), run name, extra train args
  local memory=$1 name=$2; shift 2
  note "start baseline $name"
  mbc train --preset smollm2-135m --init pretrained --base-lm "$BASE" --memory "$memory" --train "$TRAIN" \
    --val "$DEV" --format squad --epochs "$BASE_EPOCHS" --batch-size "$QA_BATCH" --eval-every 100000 \
    --run-dir "$RUNS/$name" --no-progress $QA_CAP "$@" > "$RESULTS/$name.log" 2>&1
  note "end baseline $name rc=$?"
  cp "$RUNS/$name/metrics.jsonl" "$RESULTS/$name.metrics.jsonl" 2>/dev/null
  evaluate "$name" "$memory" bank
}

qa() {  # name, pretrained run, memory, extra train args (a later option wins)
  local name=$1 from=$2 memory=$3; shift 3
  note "start qa $name from $from"
  mbc train --preset smollm2-135m --init pretrained --base-lm "$BASE" --memory "$memory" --train "$TRAIN" \
    --val "$DEV" --format squad --batch-size "$QA_BATCH" --oracle-fraction 0.5 --eval-every 200 --epochs "$QA_EPOCHS" \
    --init-from "$RUNS/$from" --max-minutes "$QA_MIN" --run-dir "$RUNS/$name" --no-progress $QA_CAP "$@" \
    > "$RESULTS/$name.log" 2>&1
  note "end qa $name rc=$?"
  cp "$RUNS/$name/metrics.jsonl" "$RESULTS/$name.metrics.jsonl" 2>/dev/null
  evaluate "$name" "$memory" oracle
  evaluate "$name" "$memory" bank
}

note "converting the GGUF once (every run then finds it in \$MBC_CACHE_DIR)"
python3 -c "import sys; from learner.model.gguf_source import resolve_lm_source; print(resolve_lm_source(sys.argv[1]))" \
  "$BASE" >> "$RESULTS/chain.log" 2>&1 || { note "cannot convert $BASE"; exit 3; }
note "phase 0: where a pretraining step's time goes (alone on the GPU)"
python3 bench/profile_pretrain.py --base-lm "$BASE" --data "$REUTERS" --batches "${PROFILE_BATCHES:-64,256}" \
  --steps "${PROFILE_STEPS:-4}" --warmup 2 --profile-steps 2 --out "$RESULTS/profile_pretrain.json" \
  > "$RESULTS/profile_pretrain.log" 2>&1
note "profile rc=$?"
# the big-batch run takes BIG_BATCH only if the profile saw it fit in 40 GiB (five runs share the GPU)
BIG_BATCH=$(python3 -c "import json,sys; r={x['batch']: x for x in json.load(open(sys.argv[1]))['rows']}; b=int(sys.argv[2]); print(b if (r.get(b, {}).get('peak_gpu_gib') or 0) <= 40 and 'error' not in r.get(b, {}) else max(int(sys.argv[3]), b // 2))" \
  "$RESULTS/profile_pretrain.json" "$BIG_BATCH" "$PRE_BATCH" 2>/dev/null || echo "$PRE_BATCH")
note "big batch $BIG_BATCH"
note "phase 1"
PIDS=()
pretrain pre-full --memory full & PIDS+=($!)
pretrain pre-g4cos-both --memory compressed --code-dim 32 --codes-per-vector 4 --code-cosine --objective both & PIDS+=($!)
pretrain pre-g4cos-b256 --memory compressed --code-dim 32 --codes-per-vector 4 --code-cosine --batch-size "$BIG_BATCH" --lr 6e-4 & PIDS+=($!)
pretrain pre-g4cos-squad --memory compressed --code-dim 32 --codes-per-vector 4 --code-cosine --data "$TRAIN" --format squad & PIDS+=($!)
baseline none base-none-r32 --lora-r 32 --lora-last-n 30 &  # the strongest floor: KV-LoRA r32 on every layer
[ "${PARAGRAPH:-0}" = 1 ] && baseline paragraph base-paragraph &
wait "${PIDS[@]}"
note "phase 2"
qa qa-g4cos-both pre-g4cos-both compressed &
qa qa-g4cos-b256 pre-g4cos-b256 compressed &
qa qa-g4cos-squad pre-g4cos-squad compressed &
qa qa-g4cos-squad-o1 pre-g4cos-squad compressed --oracle-fraction 1.0 &
qa qa-full pre-full full &
wait
note "done"
