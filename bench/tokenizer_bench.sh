#!/usr/bin/env bash
# Single-thread encode throughput, moe.cpp vs Hugging Face tokenizers (Rust, through the npm
# binding), on a few MB of mixed text, side by side.
#
#   bench/tokenizer_bench.sh [TOKENIZER_BENCH_BINARY] [TESTDATA] [MB]
#
# The text is built once from this machine's files (scripts/make-tokenizer-corpus.py --bench).
# The Hugging Face column needs node and: npm install --prefix .cache/peers @anush008/tokenizers
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin/tokenizer_bench}
testdata=${2:-../shared/testdata}
mb=${3:-4}
text=.cache/bench/tokenizer-mixed-${mb}mb.txt

[ -x "$bin" ] || { echo "tokenizer_bench binary not found: $bin" >&2; exit 1; }
if [ ! -s "$text" ]; then
  mkdir -p "$(dirname "$text")"
  MOE_TESTDATA="$testdata" /usr/bin/python3 scripts/make-tokenizer-corpus.py --bench "$text" "$mb"
fi
have_hf=0
if command -v node >/dev/null && [ -d .cache/peers/node_modules/@anush008/tokenizers ]; then have_hf=1; fi

printf "%-12s %10s %12s %10s %10s %8s\n" tokenizer "moe MB/s" "moe 1st MB/s" "HF MB/s" "speedup" "ids"
for name in deepseek-v3 qwen3; do
  tok="$testdata/tokenizers/$name/tokenizer.json"
  moe=$("$bin" "$tok" "$text" 65536 3)
  hf='{}'
  if [ $have_hf = 1 ]; then
    hf=$(RAYON_NUM_THREADS=1 node scripts/hf-tokenizer-ids.mjs --bench "$tok" "$text" 65536 3)
  fi
  /usr/bin/python3 - "$name" "$moe" "$hf" <<'EOF'
import json, sys
name, moe, hf = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
hf_rate = hf.get("mb_per_s")
same = "-" if not hf else ("same" if hf["tokens"] == moe["tokens"] else "DIFFER")
hf_col = "%10.1f" % hf_rate if hf_rate else "%10s" % "-"
speed = "%9.1fx" % (moe["mb_per_s"] / hf_rate) if hf_rate else "%10s" % "-"
print("%-12s %10.1f %12.1f %s %s %8s" % (name, moe["mb_per_s"], moe["first_pass_mb_per_s"], hf_col,
                                         speed, same))
EOF
done
echo "text: $text ($(wc -c <"$text") bytes), 64 KiB chunks, best of 3 passes; 1st = cold word cache"
