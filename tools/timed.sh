#!/usr/bin/env bash
# tools/timed.sh LOG STAGE COMMAND...: run COMMAND, append "STAGE<TAB>seconds" to LOG.
# `make demo` uses it so that its summary can say how long each stage took.
log=$1 stage=$2
shift 2
start=$(date +%s)
"$@"
status=$?
mkdir -p "$(dirname "$log")"
[ $status -eq 0 ] && printf '%s\t%s\n' "$stage" "$(( $(date +%s) - start ))" >>"$log"
exit $status
