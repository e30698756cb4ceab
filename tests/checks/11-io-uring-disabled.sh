#!/usr/bin/env bash
# Where io_uring is disabled, lab 11 is skipped, not failed: every test says
# why, and none passes or fails. The grader runs under a seccomp filter that
# refuses io_uring_setup() with EPERM (tests/checks/without_io_uring.cpp),
# which is what the kernel answers when /proc/sys/kernel/io_uring_disabled
# is 2; the servers it starts inherit the filter.
#
# Usage: BUILD=build bash tests/checks/11-io-uring-disabled.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
grader=$BUILD/tests/muxlab-grade
server=$BUILD/solutions/11-io-uring/server
[ -x "$grader" ] && [ -x "$server" ] || { echo "missing $grader or $server: run make"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-no-uring.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

${CXX:-g++} -std=c++17 -O1 -Wall -Wextra -Werror "$(dirname "$0")/without_io_uring.cpp" -o "$work/without_io_uring" ||
    { echo "FAIL: cannot build without_io_uring"; exit 1; }
if ! "$work/without_io_uring" true; then
    echo "seccomp filters are not allowed here: nothing to check"  # the kernel refuses, so no claim is made
    exit 0
fi

"$work/without_io_uring" "$grader" --lab 11 --server "$server" > "$work/out.txt" 2>&1
status=$?
cat "$work/out.txt"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
tests=$("$grader" --lab 11 --list | wc -l)
skipped=$(grep -c '^ *SKIP ' "$work/out.txt")
[ "$skipped" -eq "$tests" ] || fail "$skipped of $tests tests were skipped, expected all"
grep -qE '^ *(OK|FAIL) ' "$work/out.txt" && fail "some test passed or failed instead of being skipped"
reasons=$(grep -c 'io_uring is disabled for this process: io_uring_setup() fails with EPERM' "$work/out.txt")
[ "$reasons" -eq "$tests" ] || fail "$reasons of $tests skips give the reason (io_uring_setup fails with EPERM)"
echo "grader exit status: $status"
[ $failures -eq 0 ]
