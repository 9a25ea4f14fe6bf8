#!/usr/bin/env bash
# Parameters arrive as dotenv on stdin; run the command line the test gave.
set -uo pipefail
source /dev/stdin
bash -c "$cmd"
