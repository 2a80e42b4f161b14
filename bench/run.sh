#!/usr/bin/env bash
# Speed of `moe run` on the models at hand, 1 and 2 threads. Usage: bench/run.sh MOE TESTDATA
set -euo pipefail
moe=${1:-build/bin/moe}
testdata=${2:-../shared/testdata}
model="$testdata/models/stories260K.gguf"
echo "model: $model"
printf "%-8s %-8s %14s %14s\n" threads run "prompt tok/s" "gen tok/s"
for t in 1 2; do
  for rep in 1 2 3; do
    err=$("$moe" run -m "$model" -p "Once upon a time, there was a little girl named Lily." -n 256 --temp 0 -t "$t" 2>&1 >/dev/null)
    pp=$(sed -n 's/^prompt: .*, \([0-9.]*\) tokens\/s.*/\1/p' <<<"$err")
    tg=$(sed -n 's/^generation: .*, \([0-9.]*\) tokens\/s.*/\1/p' <<<"$err")
    printf "%-8s %-8s %14s %14s\n" "$t" "$rep" "$pp" "$tg"
  done
done
