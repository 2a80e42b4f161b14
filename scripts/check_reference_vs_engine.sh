#!/usr/bin/env bash
# Checks the forward of scripts/train_reference.py (the trainer's PyTorch oracle) against the
# inference engine: random reduced models from `moe init`, logits of `moe logits` vs the oracle's.
# Not part of `make test` (needs /usr/bin/python3 with torch and numpy).
#
# Usage: scripts/check_reference_vs_engine.sh [MOE_BINARY]   (default build/bin/moe)
# Cases: seed-moe (llama GQA + MoE, softmax, no renormalisation), deepseek-v2-lite (MLA without
# q_lora, softmax, shared experts, dense first layer), deepseek-r1 (MLA with q_lora, sigmoid +
# selection bias + group-limited routing, renormalised and scaled weights, shared experts), each
# deepseek2 case in both MLA tensor layouts and both with the file's YaRN rope scaling and with
# it stripped (plain RoPE, as the trainer runs it). Two sequences of 48 tokens per model, two seeds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
moe="${1:-$here/../build/bin/moe}"
py=/usr/bin/python3
tol=1e-4  # max |a - b| / max |b| over the logits
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail=0
quiet() {  # runs a command, showing its output only when it fails
  if ! "$@" >"$work/log" 2>&1; then cat "$work/log" >&2; echo "failed: $*" >&2; exit 1; fi
}
check() {  # check NAME GGUF
  local name="$1" gguf="$2" dir="$work/$1"
  rm -rf "$dir"
  "$py" "$here/gguf_to_npy.py" "$gguf" "$dir"
  # Two sequences of T+1 = 49 tokens; the engine runs each sequence's first 48 alone.
  "$py" - "$dir" <<'EOF'
import sys, zlib, numpy as np, json
d = sys.argv[1]
V = json.load(open(d + "/config.json"))["n_vocab"]
rng = np.random.default_rng(zlib.crc32(d.encode()))
np.save(d + "/tokens.npy", rng.integers(0, V, size=(2, 49)).astype(np.int32))
EOF
  local b
  for b in 0 1; do
    ids="$("$py" -c "import numpy as np; print(','.join(map(str, np.load('$dir/tokens.npy')[$b, :-1])))")"
    quiet "$moe" logits --model "$gguf" --ids "$ids" --out "$dir/engine.$b.npy" -t 2
  done
  quiet "$py" "$here/train_reference.py" "$dir"
  if ! "$py" - "$dir" "$name" "$tol" <<'EOF'; then fail=1; fi
import sys, numpy as np
d, name, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
eng = np.concatenate([np.load(f"{d}/engine.{b}.npy") for b in (0, 1)])
ref = np.load(d + "/logits.npy")
assert eng.shape == ref.shape, (eng.shape, ref.shape)
rel = float(np.abs(eng - ref).max() / np.abs(ref).max())
agree = float((eng.argmax(-1) == ref.argmax(-1)).mean())
print(f"{name:40s} max rel err {rel:.2e}  argmax agreement {agree:.3f}  {'ok' if rel <= tol else 'FAIL'}")
sys.exit(0 if rel <= tol else 1)
EOF
}

for seed in 1 2; do
  quiet "$moe" init --preset seed-moe --reduced --type f32 --seed "$seed" -o "$work/m.gguf"
  check "seed-moe/s$seed" "$work/m.gguf"
  for preset in deepseek-v2-lite deepseek-r1; do
    for layout in split old; do
      flag=""
      [ "$layout" = old ] && flag=--old-mla-layout
      quiet "$moe" init --preset "$preset" --reduced --type f32 --seed "$seed" $flag -o "$work/m.gguf"
      check "$preset/$layout/yarn/s$seed" "$work/m.gguf"
      "$py" "$here/gguf_to_npy.py" --strip-rope-scaling "$work/m.gguf" "$work/plain.gguf"
      check "$preset/$layout/plain-rope/s$seed" "$work/plain.gguf"
    done
  done
done
if [ "$fail" != 0 ]; then
  echo "check_reference_vs_engine: FAILED" >&2
  exit 1
fi
echo "check_reference_vs_engine: all cases within $tol"
