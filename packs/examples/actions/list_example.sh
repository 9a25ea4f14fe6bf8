#!/usr/bin/env bash
# examples.list_example: a shell action with dotenv parameters on stdin and JSON-lines output.
# Sourcing the dotenv document is safe: names are identifiers and values are single-quoted.
set -euo pipefail
count=5
source /dev/stdin
export TZ=UTC
for ((i = 1; i <= count; i++)); do
    printf -v timestamp '%(%Y-%m-%dT%H:%M:%SZ)T' -1
    printf '{"id": %d, "value": "item_%d", "timestamp": "%s"}\n' "$i" "$i" "$timestamp"
done
