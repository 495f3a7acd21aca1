#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds hearth and generates text.
#   scripts/run.sh                       # the small story model from the test data
#   scripts/run.sh MODEL.gguf "PROMPT"   # any arguments of `hearth run`
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
HEARTH_TARGET=hearth ./scripts/build.sh
if [ $# -eq 0 ]; then
  exec ./build/hearth run -p "Once upon a time" -n 128
fi
exec ./build/hearth run "$@"
