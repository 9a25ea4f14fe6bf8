#!/bin/sh
# core.noop: parameters arrive on stdin as dotenv. Sourcing it is safe: names are identifiers
# and every value is single-quoted, so nothing in a value is expanded or run. POSIX sh.
set -eu
message='' exit_code=0
. /dev/stdin
if [ -n "$message" ]; then
    printf '%s\n' "$message"
fi
exit "$exit_code"
