#!/usr/bin/env bash
# The test command (README): installs the official OpenAI and Anthropic Python SDKs into a
# private virtualenv, then runs every test of the workspace.
#
# Backends: SQLite always. PostgreSQL when TENANTGATE_TEST_POSTGRES_URL is set
# (e.g. postgres://postgres@127.0.0.1:5432/test); .ci/run sets it. Without it those tests say
# they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
venv="$target/sdk-venv"
# Pinned so a new SDK release cannot change what CI checks without a commit here.
sdk_pins=("openai==3.54.0" "anthropic==2.12.0")
if ! "$venv/bin/python" -c "import openai, anthropic" 2>/dev/null; then
  echo "== installing Python SDKs into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${sdk_pins[@]}"
fi
export TENANTGATE_PYTHON="$venv/bin/python"
export TENANTGATE_SDK_TESTS=1

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "== cargo test --workspace"
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over every test binary (cargo's own last line is a doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
