#!/usr/bin/env bash
# Generation speed (issue 28): a GPT-2 XL-shaped model (48 layers x 1600,
# 1.5B parameters, random weights saved once in Hugging Face's format) runs
# greedy generation, batch 1, a 32-token prompt, 128 new tokens, KV cache,
# after a warm-up call. accel's `gpt2 generate` against transformers'
# generate on Accelerate's device_map="auto" (bench/generate_peer.py), both
# with the same prompt, in two cases:
#   offload  max_memory {0: BUDGET, cpu: 100GiB}: most blocks offloaded to
#            host memory and brought to the GPU per block, each token
#   gpu      the whole model on the GPU
# Per case and side: tokens/s, ms per token, blocks on the GPU, peak GPU
# memory, and how many generated tokens both sides agree on (fp16 greedy:
# they may part once two logits are within rounding).
#
#   bench/generate.sh [gpu|cpu]    cpu: a smoke run of the script on a tiny size
#   env: SIZE=48x1600x25 (layers x width x heads) DTYPE=fp16 PROMPT=32 NEW=128 BATCH=1
#        BUDGET=1GiB CASES="offload gpu" SIDES="accel peer" MODEL_DIR=(kept between runs)
# On the GPU machine: bench/gpu_run.sh build generate
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
MODE="${1:-gpu}"
if [[ $MODE == cpu ]]; then
  # The same steps on a CPU with a model small enough for seconds: "offload"
  # then puts what exceeds the CPU budget on the disk (the GPU case's
  # offload path aside, every flag and the table are exercised).
  SIZE="${SIZE:-4x64x4}"; DTYPE="${DTYPE:-fp32}"; BUDGET="${BUDGET:-13.2MB}"; NEW="${NEW:-16}"
  DEVICE=cpu
else
  SIZE="${SIZE:-48x1600x25}"; DTYPE="${DTYPE:-fp16}"; BUDGET="${BUDGET:-1GiB}"; NEW="${NEW:-128}"
  DEVICE=cuda:0
fi
PROMPT="${PROMPT:-32}"; BATCH="${BATCH:-1}"; CASES="${CASES:-offload gpu}"; SIDES="${SIDES:-accel peer}"
IFS=x read -r L W H <<<"$SIZE"
MODEL_DIR="${MODEL_DIR:-${TMPDIR:-/tmp}/accel_generate_${SIZE}_${DTYPE}}"
if [[ ! -f $MODEL_DIR/config.json ]]; then
  "$PY" "$ROOT/bench/generate_peer.py" make "$MODEL_DIR" --n-layer "$L" --n-embd "$W" --n-head "$H" --dtype "$DTYPE" \
    || { echo "could not make the checkpoint in $MODEL_DIR"; exit 1; }
fi
# One prompt for both sides (token ids; there is no tokenizer here).
TOKENS="$("$PY" -c "import random; r = random.Random(0); print(','.join(str(r.randrange(50257)) for _ in range($PROMPT)))")"

: >"$OUT/generate.jsonl"
for case in $CASES; do
  budget=(); peer_budget=()
  if [[ $case == offload ]]; then
    if [[ $DEVICE == cpu ]]; then
      mkdir -p "$OUT/offload.accel" "$OUT/offload.peer"
      budget=(--max-memory "cpu:$BUDGET" --offload-dir "$OUT/offload.accel")
      peer_budget=(--max-memory "cpu:$BUDGET" --offload-dir "$OUT/offload.peer")
    else
      budget=(--max-memory "${DEVICE#cuda:}:$BUDGET,cpu:100GiB")
      peer_budget=("${budget[@]}")
    fi
  fi
  for side in $SIDES; do
    log="$OUT/$side.$case.log"
    if [[ $side == accel ]]; then
      "$B/examples/gpt2" generate --model "$MODEL_DIR" --prompt-tokens "$TOKENS" --batch "$BATCH" \
        --max-new-tokens "$NEW" --device "$DEVICE" --dtype "$DTYPE" "${budget[@]}" --warmup 1 --timing >"$log" 2>&1
    else
      "$PY" "$ROOT/bench/generate_peer.py" run "$MODEL_DIR" --prompt-tokens "$TOKENS" --batch "$BATCH" --new "$NEW" \
        --device "$DEVICE" --dtype "$DTYPE" "${peer_budget[@]}" --warmup 1 >"$log" 2>&1
    fi
    rc=$?
    if grep -q '^timing ' "$log"; then
      # The first generated row, to compare the sides.
      first="$(grep -m1 -E '^[0-9]+(,[0-9]+)*$' "$log")"
      grep '^timing ' "$log" | sed "s/^timing /{\"side\": \"$side\", \"case\": \"$case\", \"tokens\": \"$first\", \"line\": /; s/\$/}/" \
        >>"$OUT/generate.jsonl"
    else
      echo "{\"side\": \"$side\", \"case\": \"$case\", \"failed\": \"exit $rc: $(tail -1 "$log" | tr -d '"\\' | cut -c1-160)\"}" \
        >>"$OUT/generate.jsonl"
    fi
  done
done
"$PY" - "$OUT/generate.jsonl" "$SIZE" "$DTYPE" "$PROMPT" "$NEW" "$BATCH" "$BUDGET" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size, dtype, prompt, new, batch, budget = sys.argv[2:8]
print(f"GPT-2 {size} (layers x width x heads), {dtype}, greedy, batch {batch}, prompt {prompt}, {new} new tokens, "
      f"KV cache; offload: GPU budget {budget}")
print("| case | side | blocks on GPU | tokens/s | ms/token | GPU peak GiB | accel / peer | same tokens |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
by = {(r["case"], r["side"]): r for r in rows}
for r in rows:
    if "failed" in r:
        print(f"| {r['case']} | {r['side']} | | failed: {r['failed']} | | | | |")
        continue
    t = r["line"]
    ratio = same = ""
    other = by.get((r["case"], "peer" if r["side"] == "accel" else "accel"))
    if other and "line" in other:
        ratio = f"{t['tokens_per_s'] / other['line']['tokens_per_s']:.2f}x" if r["side"] == "accel" else ""
        a, b = r["tokens"].split(","), other["tokens"].split(",")
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        same = f"{max(0, n - int(prompt))}/{new}"
    print(f"| {r['case']} | {r['side']} | {t['blocks_on_device']}/{t['n_layer']} | {t['tokens_per_s']:.1f} | "
          f"{t['ms_per_token']:.1f} | {t['peak_mem_mb'] / 1024:.2f} | {ratio} | {same} |")
PYEOF
