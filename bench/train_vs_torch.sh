#!/usr/bin/env bash
# Training throughput of `moe train --bench` against the PyTorch baseline bench/train_torch.py, on the same
# model (bench/train_bench.json: moe-mini shape, seq_len 256, 8 sequences per step, f32, CPU) and threads;
# then moe with and without activation checkpointing (activation memory per micro-batch vs tokens/s).
#
# Usage: bench/train_vs_torch.sh [MOE_BINARY]     (default: build/bin/moe of this checkout)
# Environment: STEPS (timed optimizer steps per run, default 5), THREADS (default "1 2"),
#              CONFIG (moe train config, default bench/train_bench.json), PYTHON (default /usr/bin/python3).
# moe runs STEPS+1 steps and times the last STEPS; train_torch.py runs STEPS+2 and times the last STEPS.
# The torch config is derived from the moe config here, so both always train the same model.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
moe=${1:-$root/build/bin/moe}
config=${CONFIG:-$here/train_bench.json}
steps=${STEPS:-5}
threads=${THREADS:-1 2}
python=${PYTHON:-/usr/bin/python3}

die() { echo "train_vs_torch: $*" >&2; exit 1; }
[[ -x $moe ]] || die "$moe: no moe binary (build it, or pass its path)"
[[ -f $config ]] || die "$config: no such config"
[[ -x $python ]] || die "$python: python3 is needed (config conversion, JSON parsing); set PYTHON"
[[ $steps =~ ^[1-9][0-9]*$ ]] || die "STEPS must be a positive integer"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# moe config -> the flat config of bench/train_torch.py (keys of scripts/train_reference.py), with the
# moe parser's defaults for what the config leaves out; and the checkpointed variant of the moe config.
"$python" - "$config" "$tmp" <<'PY'
import json, sys
src, tmp = sys.argv[1], sys.argv[2]
c = json.load(open(src))
m = c["model"]
if m.get("preset") or m.get("kv_lora_rank") or m.get("arch", "llama") != "llama":
    sys.exit("train_vs_torch: only plain llama-style (non-preset, non-MLA) configs are converted")
hd = m.get("head_dim", m["n_embd"] // m["n_head"])
t = {
    "n_vocab": m["n_vocab"], "n_embd": m["n_embd"], "n_layer": m["n_layer"], "n_head": m["n_head"],
    "n_head_kv": m.get("n_head_kv", m["n_head"]), "head_dim_k": hd, "head_dim_v": hd,
    "n_ff": m["n_ff"], "rms_eps": m.get("rms_eps", 1e-5), "rope_freq_base": m.get("rope_theta", 10000.0),
    "rope_n_rot": m.get("rope_dim", hd),
    "n_expert": m.get("n_expert", 0), "n_expert_used": m.get("n_expert_used", 0),
    "n_expert_shared": m.get("n_expert_shared", 0), "n_ff_exp": m.get("n_ff_exp", m["n_ff"]),
    "n_layer_dense_lead": m.get("n_layer_dense_lead", 0), "gating_sigmoid": m.get("gating") == "sigmoid",
    "expert_weights_norm": m.get("expert_weights_norm", False),
    "expert_weights_scale": m.get("expert_weights_scale", 1.0),
    "n_expert_groups": m.get("n_expert_groups", 0), "n_group_used": m.get("n_group_used", 0),
    "aux_alpha": c.get("aux_alpha", 0.0) if c.get("balance", "aux") == "aux" else 0.0,
    "lr": c.get("lr", 1e-3), "weight_decay": c.get("weight_decay", 0.1), "beta1": c.get("beta1", 0.9),
    "beta2": c.get("beta2", 0.95), "eps": c.get("eps", 1e-8), "max_grad_norm": c.get("grad_clip", 1.0),
    "seq_len": c["seq_len"], "batch": c.get("batch", c["micro_batch"]),
}
if c.get("precision", "f32") != "f32":
    sys.exit("train_vs_torch: the torch baseline is f32 only; use precision f32")
json.dump(t, open(f"{tmp}/torch.json", "w"), indent=1)
for ck in (False, True):
    c["activation_checkpointing"] = ck
    json.dump(c, open(f"{tmp}/moe_ckpt{int(ck)}.json", "w"), indent=1)
print(f"model: {m.get('name', src)}: n_embd {t['n_embd']}, {t['n_layer']} layers, {t['n_expert']} experts "
      f"top-{t['n_expert_used']}, vocab {t['n_vocab']}; {t['batch']} x {t['seq_len']} tokens per step "
      f"(micro_batch {c['micro_batch']}), f32")
PY

# field NAME of the last JSON line of stdin, or "n/a"
field() { "$python" -c '
import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.startswith("{")]
try:
    print(f"{json.loads(lines[-1])[sys.argv[1]]:.1f}")
except Exception:
    print("n/a")' "$1"; }

# moe_bench CKPT THREADS -> JSON line (or nothing on failure; its stderr goes to $tmp/err)
moe_bench() { "$moe" train --config "$tmp/moe_ckpt$1.json" --bench "$steps" -t "$2" 2>"$tmp/err" || { sed 's/^/  moe: /' "$tmp/err" >&2; true; }; }

have_torch=1
if ! torch_ver=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
  have_torch=0
fi

echo "moe: $moe"
if ((have_torch)); then
  echo "torch: $torch_ver ($python, bench/train_torch.py)"
else
  echo "torch: not available to $python (import torch failed): the torch column is skipped"
fi
echo "steps: $steps timed per run"
echo

declare -A moe_tps moe_mib
printf "%-8s %14s %14s %12s\n" threads "moe tok/s" "torch tok/s" "moe/torch"
for t in $threads; do
  out=$(moe_bench 0 "$t")
  moe_tps[$t]=$(field tokens_per_s <<<"$out")
  moe_mib[$t]=$(field activation_mib <<<"$out")
  torch_tps=skipped ratio=-
  if ((have_torch)); then
    "$python" -c 'import json, sys; c = json.load(open(sys.argv[1])); c.update(threads=int(sys.argv[2]), steps=int(sys.argv[3]) + 2); json.dump(c, open(sys.argv[1], "w"))' "$tmp/torch.json" "$t" "$steps"
    tout=$("$python" "$here/train_torch.py" "$tmp/torch.json" 2>"$tmp/terr") || { sed 's/^/  torch: /' "$tmp/terr" | tail -5 >&2; tout=; }
    torch_tps=$(field tokens_per_s <<<"$tout")
    ratio=$(awk -v a="${moe_tps[$t]}" -v b="$torch_tps" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }')
  fi
  printf "%-8s %14s %14s %12s\n" "$t" "${moe_tps[$t]}" "$torch_tps" "$ratio"
done
echo

# Activation checkpointing: at the largest thread count; the plain run is the one above.
tmax=$(tr ' ' '\n' <<<"$threads" | sort -n | tail -1)
out=$(moe_bench 1 "$tmax")
ck_tps=$(field tokens_per_s <<<"$out")
ck_mib=$(field activation_mib <<<"$out")
echo "activation checkpointing (moe, -t $tmax; activation memory per micro-batch):"
printf "%-16s %16s %14s\n" checkpointing "activation MiB" "tok/s"
printf "%-16s %16s %14s\n" off "${moe_mib[$tmax]}" "${moe_tps[$tmax]}"
printf "%-16s %16s %14s\n" on "$ck_mib" "$ck_tps"
awk -v a="${moe_mib[$tmax]}" -v b="$ck_mib" -v ta="${moe_tps[$tmax]}" -v tb="$ck_tps" 'BEGIN {
  if (a + 0 > 0 && b + 0 > 0) printf "memory saved: %.1f MiB (%.0f%%)", a - b, 100 * (a - b) / a; else printf "memory saved: n/a"
  if (ta + 0 > 0 && tb + 0 > 0) printf "; speed cost: %.0f%% fewer tokens/s\n", 100 * (1 - tb / ta); else printf "\n" }'
