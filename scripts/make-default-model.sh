#!/usr/bin/env bash
# Reproduces the bundled default model (models/moe-mini/) from files every Debian 12 machine has:
# a byte-level BPE vocabulary trained on a sample of the mixture, the seed mixture tokenized into
# shards, then `moe train` with configs/train/moe-mini.json and `moe export`. Takes hours on 2 cores.
#   scripts/make-default-model.sh [WORKDIR]    (default build/default-model)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/default-model}
moe=build/bin/moe
mkdir -p "$work" models/moe-mini

# 1. Tokenizer: 4096 tokens from a fixed sample of each source kind (sorted file lists, so the
#    sample is the same on every machine with the same packages).
corpus="$work/tokenizer-corpus.txt"
{
  find /usr/share/doc -name '*.txt' -size -200k | LC_ALL=C sort | head -n 300 | xargs cat
  cat ../shared/testdata/corpus/tinyshakespeare.txt
  find /usr/share/common-licenses -type f | LC_ALL=C sort | xargs cat
  find /usr/lib/python3.11 -maxdepth 1 -name '*.py' | LC_ALL=C sort | head -n 120 | xargs cat
  for i in $(seq 1 2000); do echo "What is $((i * 7 % 97)) + $((i * 13 % 89))? $((i * 7 % 97 + i * 13 % 89))."; done
} > "$corpus"
$moe tokenizer train --vocab-size 4096 --input "$corpus" -o models/moe-mini/tokenizer.json \
  --special "<｜begin▁of▁sentence｜>" --special "<｜end▁of▁sentence｜>" \
  --special "<｜User｜>" --special "<｜Assistant｜>" --special "<think>" --special "</think>"

# 2. Data: the seed mixture (web 65%, books 15%, code 10%, synthetic 10%).
$moe data prepare --config configs/data/seed_mixture.json --tokenizer models/moe-mini/tokenizer.json \
  --out "$work/data"

# 3. Train, then 4. export (q8_0 keeps the file under 50 MB).
$moe train --config configs/train/moe-mini.json --out "$work/run"
last=$(ls "$work/run/checkpoints"/step_*.ckpt | tail -n 1)
$moe export "$last" models/moe-mini/moe-mini.gguf --type q8_0
