#!/usr/bin/env bash
# examples.dotenv_file: parameters are in a mode-0400 file named by $ATTUNE_PARAMETER_FILE, in
# dotenv format: names are identifiers and values single-quoted, so sourcing it is safe.
set -euo pipefail
greeting=Hello times=1
source "$ATTUNE_PARAMETER_FILE"
for ((i = 1; i <= times; i++)); do
    printf '%s, %s!\n' "$greeting" "$name"
done
