#!/usr/bin/env bash
# core.sleep: parameters arrive on stdin as dotenv (see noop.sh on why sourcing is safe).
set -euo pipefail
source /dev/stdin
exec sleep "$seconds"
