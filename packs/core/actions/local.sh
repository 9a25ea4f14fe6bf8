#!/usr/bin/env bash
# core.local: run a command line. Parameters arrive on stdin as dotenv (see noop.sh on why
# sourcing is safe); the command gets an empty stdin and the action's cleaned environment.
set -euo pipefail
cwd=''
source /dev/stdin
if [[ -n $cwd ]]; then
    cd -- "$cwd" || { printf 'core.local: cannot enter cwd %q\n' "$cwd" >&2; exit 1; }
fi
exec bash -c "$cmd" </dev/null
