#!/usr/bin/env bash
# crash.sh [CYCLES]: SIGKILL busbar CYCLES times (default 100) under QoS 1
# and QoS 2 load with the durable file store, and check that no
# acknowledged QoS 1 message is lost and no QoS 2 message is delivered
# twice. It runs TestCrashDurability (cmd/busbar/crash_test.go), which
# re-executes its test binary as busbar (--store_dir in a temp dir), kills
# it at a random moment of each cycle and restarts it on the same store.
# Run from anywhere in the repository; the full log is kept in a temp file
# whose name is printed at the end.
set -euo pipefail

cycles=${1:-100}
case $cycles in
'' | *[!0-9]*)
	echo "usage: $0 [CYCLES]" >&2
	exit 2
	;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/busbar-crash.XXXXXX.log")

echo "crash.sh: $cycles SIGKILL cycles of busbar (TestCrashDurability), log in $log"
start=$(date +%s)
rc=0
(cd "$root/cmd/busbar" && BUSBAR_CRASH_CYCLES=$cycles go test -count=1 -run TestCrashDurability -v -timeout 60m) >"$log" 2>&1 || rc=$?
elapsed=$(($(date +%s) - start))

# The summary: the test's own line ("N SIGKILLs: QoS 1 ... acked, QoS 2
# ... completed"), its verdict and any failure message.
grep -E 'SIGKILLs:|^(--- )?(PASS|FAIL)|^ok |Error Trace|Error:|Messages:|panic:' "$log" | sed 's/^[[:space:]]*//' || true
if [ "$rc" -eq 0 ]; then
	echo "crash.sh: PASS: $cycles SIGKILLs, no acknowledged QoS 1 message lost, no QoS 2 duplicate (${elapsed}s)"
else
	echo "crash.sh: FAIL (exit $rc after ${elapsed}s); full log: $log"
fi
exit "$rc"
