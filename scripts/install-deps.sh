#!/usr/bin/env bash
# Installs the Debian packages moe.cpp needs to build and test. Idempotent; prints nothing when
# everything is already there.
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libgtest-dev libgmock-dev        # tests
  nlohmann-json3-dev               # JSON
  libcli11-dev                     # command line
  libpcre2-dev                     # tokenizer pre-split regexes (Unicode classes)
  libicu-dev                       # Unicode normalization (NFC/NFKC) for tokenizers
  libcpp-httplib-dev               # HTTP(S) server of `moe serve`
  libssl-dev                       # JWT signatures (HS256/RS256/ES256), TLS
  libre2-dev                       # linear-time redaction/moderation regexes on untrusted text
  libopenblas-dev                  # SGEMM of the training ops
  python3-torch                    # gradient oracle for tests and bench
  prometheus                       # promtool: tests check /metrics with it
  chromium                         # headless browser: the chat page test
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
