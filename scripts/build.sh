#!/usr/bin/env bash
# Configures and builds hearth into build/ (Release, warnings as errors). Extra arguments go
# to cmake's configure step; HEARTH_TARGET=name builds one target (default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${HEARTH_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHEARTH_WERROR=ON "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" ${HEARTH_TARGET:+--target "$HEARTH_TARGET"}
