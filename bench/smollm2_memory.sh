#!/usr/bin/env bash
# The memory-learning chain of issue 19 on one GPU (bench/smollm2_memory.md says how to start it on
# the H200 and what each run is to show). Everything runs in the background; results land in
# $RESULTS (metrics.jsonl of every run, eval summaries, one log per run, chain.log).
#
# The fourth lease's plan, after the third showed float memory read through the reconstruction query
# doubling the closed-book floor (oracle F1 15.0 vs 7.7) while the G = 4 cosine code space kept a third
# of the float memory's pretraining gap, and bench/posthoc_quantize.py (CPU) showed plain product
# quantization of that float run's vectors keeping more than the trained code space did:
# Phase 0 (optional, PROFILE=1): bench/profile_pretrain.py alone.
# Phase 1: compressed pretraining *from the float run* (FROM_FULL: its checkpoint, carried from the CPU
# machine where one is at hand; without it the float run is pretrained first, phase 1a) with summed codes (--code-combine sum,
# G·d = 576: it starts as k-means PQ of the float vectors), for each G of PQ_GROUPS; beside them the
# float run's QA.
# Phase 2: QA with --memory-query reconstruct, every question on its own paragraph, from each phase-1
# run; then each run's oracle row, its bank row with BM25 retrieval of RETRIEVE paragraphs (--retriever
# bm25: the reconstruction query needs the question's paragraph found first), and
# bench/qa_memory_gap.py.
#
# Scale knobs (environment): PRE_MIN, QA_MIN (minutes), PRE_BATCH, QA_BATCH, EVAL_DOCS, PRE_STEPS,
# QA_STEPS (a step cap, for CPU smoke runs), MAX_TEXTS, BASE_EPOCHS, EVAL_CHUNKS, LOG_EVERY, BIG_BATCH, QA_EPOCHS,
# PROFILE_BATCHES, PROFILE_STEPS, PQ_GROUPS, PQ_LR, RETRIEVE, FROM_FULL, FULL_MIN, FULL_QA_MIN, KMEANS_CHUNKS,
# PACKED, PACK, FROZEN (1: also QA with --freeze-writer), KEY_STEPS, KEY_RETRIEVE, KEY_DOCS, KEY_VAL_DOCS, PQ_STEPS (a step cap of phase 1 alone:
# PQ_STEPS=2 makes it the k-means PQ of the float vectors, for a short lease).
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-.data}
BASE=${BASE:-/tmp/base/SmolLM2-135M-Instruct.Q4_1.gguf}
RUNS=${RUNS:-/tmp/runs}
RESULTS=${RESULTS:-/tmp/results}
FULL_MIN=${FULL_MIN:-6}  # phase 1a (the float run, when none is carried)
PRE_MIN=${PRE_MIN:-6}
QA_MIN=${QA_MIN:-8}
PRE_BATCH=${PRE_BATCH:-64}
BIG_BATCH=${BIG_BATCH:-128}
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
PQ_GROUPS=${PQ_GROUPS:-2 4 8}  # codes per vector: 27, 54, 108 bytes per document (K = 12, 9 bits)
PQ_LR=${PQ_LR:-3e-4}
RETRIEVE=${RETRIEVE:-1}
PACKED=${PACKED:-/tmp/pk}  # checkpoints packed for the way back (PACK: the runs to pack)
PACK=${PACK:-pre-full pre-pq4 qa-full-rq qa-pq4-rq}
mkdir -p "$RUNS" "$RESULTS" "$PACKED"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
mbc() { python3 -c 'from mbc.cli import main; main()' "$@"; }
note() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$RESULTS/chain.log"; }

REUTERS=$DATA/reuters21578.jsonl
[ -f "$REUTERS" ] || { gunzip -c "$REUTERS.gz" > "$RUNS/reuters21578.jsonl" && REUTERS=$RUNS/reuters21578.jsonl; }
TRAIN=$DATA/squad-v1.1-train-part-1.json
DEV=$DATA/squad-v1.1-dev-part-a.json
TEXTS=${MAX_TEXTS:+--max-texts $MAX_TEXTS}
QA_CAP=${QA_STEPS:+--max-steps $QA_STEPS}

pack() {  # run name: its last checkpoint in bf16 pieces under $PACKED, as soon as it exists (a machine
  # that goes back mid-chain then loses no finished run: every watch call brings $PACKED back)
  python3 bench/pack_checkpoint.py "$RUNS/$1/checkpoints/last" "$PACKED" --name "$1" >> "$RESULTS/pack.log" 2>&1
  note "packed $1 rc=$?"
}

pretrain() {  # name, extra args
  local name=$1; shift
  note "start pretrain $name"
  mbc pretrain-amortizer --preset smollm2-135m --base-lm "$BASE" --data "$REUTERS" --format reuters $TEXTS \
    --objective reconstruct --doc-tokens 128 --batch-size "$PRE_BATCH" --lr 3e-4 --warmup-steps 30 \
    --steps "$PRE_STEPS" --log-every "$LOG_EVERY" --eval-chunks "$EVAL_CHUNKS" --kmeans-chunks "${KMEANS_CHUNKS:-1024}" --max-minutes "$PRE_MIN" --run-dir "$RUNS/$name" \
    --no-progress "$@" > "$RESULTS/$name.log" 2>&1
  note "end pretrain $name rc=$?"
  cp "$RUNS/$name/metrics.jsonl" "$RESULTS/$name.metrics.jsonl" 2>/dev/null
  case " $PACK " in *" $name "*) pack "$name" & ;; esac
}

evaluate() {  # run name, memory, bank: oracle | bank (the whole bank) | bm25 (RETRIEVE paragraphs by BM25)
  # | keys (KEY_RETRIEVE by the learned keys) | sketch (KEY_RETRIEVE by the text sketch, issue 20)
  local name=$1 memory=$2 bank=$3 how
  case $bank in
    oracle) how="--oracle" ;;
    bm25) how="--no-oracle --retrieve $RETRIEVE --retriever bm25" ;;
    keys) how="--no-oracle --retrieve ${KEY_RETRIEVE:-8} --retriever keys" ;;
    sketch) how="--no-oracle --retrieve ${KEY_RETRIEVE:-8} --retriever sketch" ;;  # the text sketch key
    *) how="--no-oracle" ;;
  esac
  mbc eval --checkpoint "$RUNS/$name/checkpoints/last" --data "$DEV" --format squad --num-docs "$EVAL_DOCS" \
    --memory "$memory" $how --batch-size "$EVAL_BATCH" --bf16 --base-lm "$BASE" --out "$RESULTS/eval-$name" \
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

qa() {  # name, pretrained run, memory, banks (oracle | "oracle bank"), extra train args (a later option wins)
  local name=$1 from=$2 memory=$3 banks=$4; shift 4
  note "start qa $name from $from"
  mbc train --preset smollm2-135m --init pretrained --base-lm "$BASE" --memory "$memory" --train "$TRAIN" \
    --val "$DEV" --format squad --batch-size "$QA_BATCH" --oracle-fraction 0.5 --eval-every 200 --epochs "$QA_EPOCHS" \
    --init-from "$(case $from in /*) echo "$from" ;; *) echo "$RUNS/$from" ;; esac)" --max-minutes "$QA_MIN" --run-dir "$RUNS/$name" --no-progress $QA_CAP "$@" \
    > "$RESULTS/$name.log" 2>&1
  note "end qa $name rc=$?"
  cp "$RUNS/$name/metrics.jsonl" "$RESULTS/$name.metrics.jsonl" 2>/dev/null
  case " $PACK " in *" $name "*) pack "$name" & ;; esac
  for bank in $banks; do evaluate "$name" "$memory" "$bank"; done
  python3 bench/qa_memory_gap.py --checkpoint "$RUNS/$name/checkpoints/last" --data "$DEV" --base-lm "$BASE" \
    --num-docs "$EVAL_DOCS" --no-progress --out "$RESULTS/gap-$name.json" > "$RESULTS/gap-$name.log" 2>&1
  note "qa memory gap $name rc=$?"
  if [ "$memory" = compressed ]; then  # issue 20: learned keys, recall@k against all of dev part A
    mbc train-keys --checkpoint "$RUNS/$name/checkpoints/last" --data "$TRAIN" --val-data "$DEV" --bf16 \
      --base-lm "$BASE" --steps "${KEY_STEPS:-600}" ${KEY_DOCS:+--num-docs $KEY_DOCS} \
      ${KEY_VAL_DOCS:+--val-num-docs $KEY_VAL_DOCS} --no-progress > "$RESULTS/keys-$name.json" 2> "$RESULTS/keys-$name.log"
    note "train keys $name rc=$?"
    cp "$RUNS/$name/checkpoints/last/key_head.safetensors" "$RESULTS/keyhead-$name.safetensors" 2>/dev/null  # 1.7 MB
    evaluate "$name" compressed keys
  fi
}

note "converting the GGUF once (every run then finds it in \$MBC_CACHE_DIR)"
python3 -c "import sys; from learner.model.gguf_source import resolve_lm_source; print(resolve_lm_source(sys.argv[1]))" \
  "$BASE" >> "$RESULTS/chain.log" 2>&1 || { note "cannot convert $BASE"; exit 3; }
if [ "${PROFILE:-0}" = 1 ]; then
  note "phase 0: where a pretraining step's time goes (alone on the GPU)"
  python3 bench/profile_pretrain.py --base-lm "$BASE" --data "$REUTERS" --batches "${PROFILE_BATCHES:-128,256}" \
    --steps "${PROFILE_STEPS:-4}" --warmup 2 --profile-steps 2 --out "$RESULTS/profile_pretrain.json" \
    > "$RESULTS/profile_pretrain.log" 2>&1
  note "profile rc=$?"
fi
R="--batch-size $BIG_BATCH"
if [ -n "${FROM_FULL:-}" ] && [ -f "$FROM_FULL/model.safetensors" ]; then
  note "float run: $FROM_FULL (carried)"
else
  note "phase 1a: the float run first (no FROM_FULL)"
  pretrain pre-full --memory full $R --lr 6e-4 --max-minutes "$FULL_MIN"
  FROM_FULL=$RUNS/pre-full
fi
note "phase 1"
RQ="--memory-query reconstruct --oracle-fraction 1.0"
# the float reference (F1 15.0 after 9 minutes on the third lease) needs only the float run: it starts
# now and trains through phases 1 and 2 (FULL_QA_MIN) -- does longer QA move the oracle row?
qa qa-full-rq "$FROM_FULL" full "oracle bm25 sketch" $RQ --max-minutes "${FULL_QA_MIN:-$((PRE_MIN + QA_MIN))}" &
PIDS=()
for g in $PQ_GROUPS; do  # summed codes, G·d = D = 576: the first step is k-means PQ of the float vectors
  pretrain "pre-pq$g" --memory compressed --codes-per-vector "$g" --code-dim $((576 / g)) --no-code-cosine \
    --code-combine sum --init-from "$FROM_FULL" $R --lr "$PQ_LR" ${PQ_STEPS:+--steps $PQ_STEPS} & PIDS+=($!)
done
[ "${FLOOR:-0}" = 1 ] && baseline none base-none-r32 --lora-r 32 --lora-last-n 30 &  # F1 7.7 on 2026-12-03
wait "${PIDS[@]}"
note "phase 2"
for g in $PQ_GROUPS; do
  qa "qa-pq$g-rq" "pre-pq$g" compressed "oracle bm25 sketch" $RQ &
  # beside it, the same QA with the writer frozen (the fifth lease: QA training kept 0.26 of the float
  # run's QA memory gap where the codes it started from held 0.77 of its reconstruction gap)
  [ "${FROZEN:-1}" = 1 ] && qa "qa-pq$g-rq-fw" "pre-pq$g" compressed "oracle bm25 sketch" $RQ --freeze-writer &
done
wait
note "done"
