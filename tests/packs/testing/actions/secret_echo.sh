#!/usr/bin/env bash
# Parameters arrive as dotenv on stdin; print both back.
set -euo pipefail
source /dev/stdin
printf 'note=%s token=%s\n' "$note" "$token"
