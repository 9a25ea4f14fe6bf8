#!/usr/bin/env bash
# core.echo: print the message. Parameters arrive on stdin as dotenv: message='<text>'.
set -euo pipefail
IFS= read -r -d '' document || true
document=${document%$'\n'}
value=${document#message=}
if [[ $value == \'*\' ]]; then
    value=${value:1:${#value}-2}
    value=${value//\'\\\'\'/\'}
fi
printf '%s\n' "$value"
