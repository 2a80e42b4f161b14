#!/usr/bin/env bash
# moe.cpp vs llama.cpp on the benchmark models: prompt processing (P tokens, one batch) and
# generation (N tokens, one at a time), medians of REPS, at Q8_0 and Q4_0, with 1 and 2 threads,
# plus the memory bandwidth moe.cpp's generation reaches (`moe bench`).
#
#   bench/vs_llamacpp.sh [MOE_BINARY]
#   P=512 N=128 REPS=3 THREADS="1 2" MODELS="ds2 qw2" TYPES="q8_0 q4_0" BENCH_DIR=.cache/bench
#
# Models (random weights, written by `moe init` with a synthetic vocabulary so llama.cpp loads
# them, then `moe quantize`): ds2 = preset bench-deepseek2 (DeepSeek-V3-style MoE, MLA, 64 experts
# top-6 + 2 shared, 1.25B total), qw2 = preset bench-qwen2 (dense, ~130M). They are kept in
# BENCH_DIR (git-ignored) and reused; delete them to regenerate. llama.cpp runs through
# node-llama-cpp (scripts/llama-cpp-bench.mjs), installed into .cache/peers when missing; without
# it only the moe.cpp columns are filled.
set -euo pipefail
cd "$(dirname "$0")/.."
moe=${1:-build/bin/moe}
P=${P:-512}
N=${N:-128}
REPS=${REPS:-3}
THREADS=${THREADS:-"1 2"}
MODELS=${MODELS:-"ds2 qw2"}
TYPES=${TYPES:-"q8_0 q4_0"}
dir=${BENCH_DIR:-.cache/bench}

[ -x "$moe" ] || { echo "vs_llamacpp: moe binary not found: $moe (make build)" >&2; exit 1; }
command -v node >/dev/null || { echo "vs_llamacpp: node is needed (scripts/install-deps.sh)" >&2; exit 1; }
mkdir -p "$dir"

preset_of() {
  case "$1" in
    ds2) echo bench-deepseek2 ;;
    qw2) echo bench-qwen2 ;;
    *) echo "vs_llamacpp: unknown model '$1' (ds2 or qw2)" >&2; exit 1 ;;
  esac
}

# The f16 model, then each quantized type, unless already there (both commands write atomically).
for m in $MODELS; do
  f16="$dir/$m-f16.gguf"
  if [ ! -s "$f16" ]; then
    echo "vs_llamacpp: writing $f16" >&2
    "$moe" init --preset "$(preset_of "$m")" --type f16 -o "$f16" >&2
  fi
  for t in $TYPES; do
    out="$dir/$m-$t.gguf"
    if [ ! -s "$out" ]; then
      echo "vs_llamacpp: quantizing $out" >&2
      "$moe" quantize "$f16" "$out" "$t" 2>/dev/null || { echo "vs_llamacpp: moe quantize $f16 $out $t failed" >&2; exit 1; }
    fi
  done
done

have_llama=1
if [ ! -e .cache/peers/node_modules/@node-llama-cpp/linux-x64/package.json ]; then
  scripts/install-peers.sh || true
  [ -e .cache/peers/node_modules/@node-llama-cpp/linux-x64/package.json ] || {
    have_llama=0
    echo "vs_llamacpp: node-llama-cpp could not be installed; llama.cpp columns are empty" >&2
  }
fi

# Whether other processes used the CPUs while a row was measured: on a 2-core machine a concurrent
# build halves the 2-thread numbers, and llama.cpp's spinning threads suffer most. snap prints the
# machine's busy and total jiffies (/proc/stat) and the CPU time of this shell and its waited-for
# children (/proc/$$/stat); other_busy prints the CPUs (in hundredths) others kept busy between two.
snap() {
  local c s
  read -r -a c < /proc/stat
  s=$(< /proc/$$/stat)
  read -r -a s <<<"${s##*) }"  # fields after the command name: s[11..14] = utime stime cutime cstime
  echo "$((c[1]+c[2]+c[3]+c[6]+c[7]+c[8])) $((c[1]+c[2]+c[3]+c[4]+c[5]+c[6]+c[7]+c[8])) $((s[11]+s[12]+s[13]+s[14]))"
}
other_busy() {
  local a b
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  local total=$((b[1] - a[1])) other=$(((b[0] - a[0]) - (b[2] - a[2])))
  echo $((total > 0 ? other * 100 * $(nproc) / total : 0))
}

# One table row from moe's and llama's JSON (llama's may be "{}").
row() {
  node -e '
    const [m, t, th, a, b] = process.argv.slice(1);
    const moe = JSON.parse(a), ll = JSON.parse(b);
    const f = (x, d = 1) => (x == null ? "-" : x.toFixed(d));
    const ratio = (x, y) => (x == null || y == null || y === 0 ? "-" : (x / y).toFixed(2) + "x");
    const pct = moe.bw_fraction == null ? "-" : (100 * moe.bw_fraction).toFixed(0) + "%";
    console.log([m.padEnd(5), t.padEnd(5), th.padStart(3),
      f(moe.pp_tok_s).padStart(9), f(ll.pp_tok_s).padStart(9), ratio(moe.pp_tok_s, ll.pp_tok_s).padStart(6),
      f(moe.tg_tok_s).padStart(9), f(ll.tg_tok_s).padStart(9), ratio(moe.tg_tok_s, ll.tg_tok_s).padStart(6),
      f(moe.tg_gb_s).padStart(7), pct.padStart(6), f(moe.membw_gb_s).padStart(7), f(moe.bound_tok_s).padStart(8)].join(" "));
  ' "$@"
}

echo "P=$P N=$N REPS=$REPS; tok/s are medians; moe GB/s = weight bytes per token x generation tok/s," \
     "% of the memory read bandwidth moe bench measured with the same threads; bound = bandwidth / bytes per token"
printf "%-5s %-5s %3s %9s %9s %6s %9s %9s %6s %7s %6s %7s %8s\n" model type thr "moe pp" "llama pp" ratio \
  "moe tg" "llama tg" ratio "GB/s" "%bw" "membw" "bound"
noisy=0
for m in $MODELS; do
  for t in $TYPES; do
    f="$dir/$m-$t.gguf"
    for th in $THREADS; do
      s0=$(snap)
      mj=$("$moe" bench -m "$f" -t "$th" -p "$P" -n "$N" -r "$REPS" --json)
      lj='{}'
      if [ $have_llama = 1 ]; then
        lj=$(node scripts/llama-cpp-bench.mjs "$f" "$th" "$P" "$N" "$REPS") || lj='{}'
      fi
      busy=$(other_busy "$s0" "$(snap)")
      line=$(row "$m" "${t^^}" "$th" "$mj" "$lj")
      if [ "$busy" -gt 25 ]; then
        line="$line  * busy"
        noisy=1
      fi
      echo "$line"
    done
  done
done
if [ $noisy = 1 ]; then
  echo "* busy: other processes kept more than a quarter of a CPU busy during this row; its numbers are low"
fi
