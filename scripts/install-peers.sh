#!/usr/bin/env bash
# Installs the npm peers that reference scripts compare moe.cpp with, into .cache/peers (git-ignored;
# never committed). Idempotent: packages already present (at the pinned version, if pinned) are not
# fetched again.
#
#   scripts/install-peers.sh            # all peers
#   MOE_PEERS=/path scripts/install-peers.sh
#
# One package per line in PACKAGES (name or name@exact-version); append new peers there.
# Every install uses --omit=optional, or node-llama-cpp would pull its CUDA/Vulkan/other-OS builds
# (GBs); so platform binaries that packages ship as optional dependencies are listed explicitly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
peers="${MOE_PEERS:-$root/.cache/peers}"

PACKAGES=(
  @huggingface/jinja      # Jinja for chat templates: scripts/chat-template-refs.mjs
  @anush008/tokenizers    # Hugging Face tokenizers (Rust): bpe_test, bench/tokenizer_bench.sh
  @anush008/tokenizers-linux-x64-gnu@0.6.0   # its native binary (optional dep; match its version)
  node-llama-cpp@3.21.1                      # llama.cpp: scripts/llama-cpp-eval.mjs
  @node-llama-cpp/linux-x64@3.21.1           # its prebuilt CPU binary (optional dep)
  openai@4.104.0                             # the official OpenAI client: tests/serve_openai.mjs
  playwright-core@1.65.1                     # drives Debian's chromium: the chat page test
  autocannon@8.0.0                           # HTTP load generator: bench/serve_load.sh
)

# The postinstall step would otherwise try to download or build llama.cpp.
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

mkdir -p "$peers"
missing=()
for p in "${PACKAGES[@]}"; do
  case "$p" in   # a version follows an "@" that is not the scope's leading one
    ?*@*) name="${p%@*}" want="${p##*@}" ;;
    *)    name="$p" want="" ;;
  esac
  pj="$peers/node_modules/$name/package.json"
  if [ ! -e "$pj" ]; then missing+=("$p"); continue; fi
  if [ -n "$want" ]; then
    have="$(node -p "require(process.argv[1]).version" "$pj")"
    [ "$have" = "$want" ] || missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-peers: installing ${missing[*]} into $peers" >&2
npm install --prefix "$peers" --no-audit --no-fund -E --omit=optional "${missing[@]}" >&2
