#!/usr/bin/env bash
# examples.yaml_report: the YAML parameter document arrives on stdin; indented under a key,
# it is valid YAML as it stands, so the script reports it without parsing it.
set -euo pipefail
IFS= read -r -d '' document || true
printf 'action: %s\n' "${ATTUNE_ACTION:-examples.yaml_report}"
printf 'execution_id: %s\n' "${ATTUNE_EXECUTION_ID:-null}"
printf 'bash_version: "%s"\n' "$BASH_VERSION"
printf 'parameters:\n'
while IFS= read -r line; do
    printf '  %s\n' "$line"
done <<<"${document%$'\n'}"
