#!/usr/bin/env bash
# One watch call of a background chain on the GPU machine (bench/smollm2_memory.md): wait, print where
# the chain is, and bring back its results and every checkpoint piece not brought back yet, within one
# call's limits (8 files, 64 MiB: results.tgz plus at most MAX_PIECES (4) pieces of 15 MB,
# only of checkpoints whose packing chain.log says is done). A piece is
# marked sent when copied to $OUT; if a call's files do not come back, `rm -rf /tmp/sent` resends.
#
# It returns early once chain.log says `done`, and refreshes $OUT/results.tgz every 15 s while it
# waits, so a call cut short by the session's last device seconds still brings the latest results.
#
#   bash bench/device_watch.sh [SECONDS]     # default 270: a call of at most 5 minutes
set -u
RESULTS=${RESULTS:-/tmp/results} PACKED=${PACKED:-/tmp/pk} MAX_PIECES=${MAX_PIECES:-4}
snapshot() { tar czf "$OUT/results.tgz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")" 2>/dev/null; }
end=$(( $(date +%s) + ${1:-270} ))
while [ "$(date +%s)" -lt "$end" ] && ! grep -q ' done$' "$RESULTS/chain.log" 2>/dev/null; do
  sleep 15; snapshot
done
grep -v "Converting\|Loading\|Writing\|BaseIdentity" "$RESULTS/chain.log"
for f in "$RESULTS"/*.log; do echo "== $f"; tail -n 2 "$f" | cut -c1-400; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
snapshot
mkdir -p /tmp/sent
sent=0
done_packs=$(sed -n 's/.* packed \([^ ]*\) rc=0$/\1/p' "$RESULTS/chain.log")  # pieces complete
for f in $(for n in $done_packs; do ls "$PACKED/$n".tgz.part-* 2>/dev/null; done); do
  [ -e "/tmp/sent/$(basename "$f")" ] && continue
  [ "$sent" -ge "$MAX_PIECES" ] && { echo "more pieces wait for the next call"; break; }
  cp "$f" "$OUT/" && touch "/tmp/sent/$(basename "$f")" && sent=$((sent + 1)) && echo "sent $(basename "$f")"
done
