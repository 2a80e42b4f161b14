#!/usr/bin/env bash
# Installs the npm peers that reference scripts compare moe.cpp with, into .cache/peers (git-ignored;
# never committed). Idempotent: packages already present are not fetched again.
#
#   scripts/install-peers.sh            # all peers
#   MOE_PEERS=/path scripts/install-peers.sh
#
# One package per line in PACKAGES; append new peers there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
peers="${MOE_PEERS:-$root/.cache/peers}"

PACKAGES=(
  @huggingface/jinja   # Jinja for chat templates: scripts/chat-template-refs.mjs
)

mkdir -p "$peers"
missing=()
for p in "${PACKAGES[@]}"; do
  [ -e "$peers/node_modules/$p/package.json" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-peers: installing ${missing[*]} into $peers" >&2
npm install --prefix "$peers" --no-audit --no-fund "${missing[@]}" >&2
