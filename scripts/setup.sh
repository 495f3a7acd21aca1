#!/usr/bin/env bash
# Installs the Debian packages hearth needs to build and test. Idempotent.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang zlib1g-dev libpcre2-dev libutf8proc-dev
      nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev
      libcurl4-openssl-dev python3 git ca-certificates ccache)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}"
fi
# Node.js and npm run the daemon's tests with the official JavaScript clients (tests/server/js).
# Only when npm is missing: a Node.js from NodeSource bundles npm, and Debian's npm package
# conflicts with it.
if ! command -v npm >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends nodejs npm
fi
