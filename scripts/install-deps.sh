#!/usr/bin/env bash
# Installs libllm's build dependencies from Debian packages if any is missing
# (idempotent; needs root or sudo when something must be installed).
set -euo pipefail
packages=(build-essential cmake pkg-config libflatbuffers-dev flatbuffers-compiler libmimalloc-dev
          nlohmann-json3-dev libpcre2-dev libutf8proc-dev libxxhash-dev libgtest-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
