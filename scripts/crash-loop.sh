#!/usr/bin/env bash
# The audit log's crash test at full length: the real binary killed with SIGKILL under load,
# KILLS times (default 200); then every acknowledged call must have its record and the chain
# must verify offline. CI runs the same test with a shorter loop.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS="${1:-200}"
TENANTGATE_CRASH_KILLS="$KILLS" cargo test --locked -p tenantgate --test crash -- --nocapture
