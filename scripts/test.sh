#!/usr/bin/env bash
# The test command (README): installs the official OpenAI and Anthropic Python SDKs into a
# private virtualenv, then runs every test binary of the workspace (all of them, even after
# one fails) and ends with one line: `tests: N passed, N failed, N skipped`.
#
# Backends: SQLite always. PostgreSQL when TENANTGATE_TEST_POSTGRES_URL is set
# (e.g. postgres://postgres@127.0.0.1:5432/test) and Redis when TENANTGATE_TEST_REDIS_URL is
# (redis://127.0.0.1:6379); the customer-key suites when TENANTGATE_TEST_KMS_URL points at a
# local AWS KMS (moto: scripts/moto_kms.py) and AWS_ACCESS_KEY_ID is set. .ci/run sets them
# all. Without them those tests skip, and each skip is counted as skipped, not passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

# Tests run with the crate's folder as their working directory, so every path handed to them
# must be absolute: a relative CARGO_TARGET_DIR is taken relative to the workspace root here.
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
mkdir -p "$target"
venv="$target/sdk-venv"
# Pinned so a new SDK release cannot change what CI checks without a commit here.
sdk_pins=("openai==3.54.0" "anthropic==2.12.0")
if ! "$venv/bin/python" -c "import openai, anthropic" 2>/dev/null; then
  echo "== installing Python SDKs into $venv"
  if ! python3 -m venv "$venv" ||
     ! "$venv/bin/pip" install --quiet --disable-pip-version-check "${sdk_pins[@]}"; then
    echo "could not install the Python SDKs into $venv (needs python3 with venv and pip)" >&2
    echo "tests: 0 passed, 1 failed"
    exit 1
  fi
fi
export TENANTGATE_PYTHON="$venv/bin/python"
export TENANTGATE_SDK_TESTS=1

log="$(mktemp)"
# A test that cannot run here (no PostgreSQL or Redis configured) appends one line naming
# itself to this file, so the summary can tell skipped from passed.
export TENANTGATE_SKIP_LOG="$(mktemp)"
trap 'rm -f "$log" "$TENANTGATE_SKIP_LOG"' EXIT
echo "== cargo test --workspace"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

if [ -s "$TENANTGATE_SKIP_LOG" ]; then
  echo "== skipped (the backend they need is not configured)"
  sort "$TENANTGATE_SKIP_LOG" | sed 's/^/   /'
fi
# One closing line over every test binary (cargo's own last line is a doc-test run). A test
# that skipped reported success to libtest, so it is moved from passed to skipped.
awk -v skipfile="$TENANTGATE_SKIP_LOG" -v status="$status" '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
  END {
    s = 0; while ((getline line < skipfile) > 0) s++
    # cargo failed with no failed test counted: the build failed or a test binary crashed.
    if (status != 0 && f == 0) f = 1
    printf "tests: %d passed, %d failed, %d skipped\n", p - s, f, s
  }' "$log"
exit "$status"
