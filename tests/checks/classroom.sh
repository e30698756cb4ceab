#!/usr/bin/env bash
# GitHub Classroom: the generated workflow and autograding.json are valid,
# and their commands behave as the command grader needs: exit 0 exactly
# when the test passes, one Score line on stdout, nothing on stderr.
#
# Usage: BUILD=build bash tests/checks/classroom.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-classroom.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

GRADER=$BUILD/tests/muxlab-grade .github/classroom/generate --labs 01 --out "$work/github" || exit 1
workflow=$work/github/workflows/classroom.yml
json=$work/github/classroom/autograding.json
tests=$("$BUILD/tests/muxlab-grade" --list --lab 01 | wc -l)
points=$("$BUILD/tests/muxlab-grade" --list --lab 01 | awk '{s += $3} END {print s}')
if command -v python3 > /dev/null; then
    python3 - "$json" "$tests" "$points" <<'PY' || fail "autograding.json"
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["tests"]) == int(sys.argv[2]) and sum(t["points"] for t in d["tests"]) == int(sys.argv[3])
for t in d["tests"]:
    assert {"name", "setup", "run", "input", "output", "comparison", "timeout", "points"} <= set(t)
PY
    if python3 -c 'import yaml' 2> /dev/null; then
        python3 - "$workflow" "$tests" <<'PY' || fail "classroom.yml"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
steps = d["jobs"]["run-autograding-tests"]["steps"]
graders = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-command-grader")]
assert len(graders) == int(sys.argv[2]), len(graders)
reporter = steps[-1]
runners = reporter["with"]["runners"].split(",")
assert runners == [s["id"] for s in graders]
for s in graders:
    assert s["id"][0].isalpha()
    assert reporter["env"][s["id"].upper() + "_RESULTS"] == "${{steps.%s.outputs.result}}" % s["id"]
PY
    fi
fi

# Run every generated command in a checkout-like tree: build/labs/01-iterative/server
# is the reference solution (all pass), then a broken server (ReadyLine fails).
mkdir -p "$work/checkout/build/tests" "$work/checkout/build/labs/01-iterative"
ln -s "$(pwd)/$BUILD/tests/muxlab-grade" "$work/checkout/build/tests/muxlab-grade"
run_all() {  # run_all EXPECTED_STATUS_OF_READYLINE
    sed -n 's/.*"run": "\([^"]*\)".*/\1/p' "$json" | while read -r command; do
        (cd "$work/checkout" && eval "$command") > "$work/out" 2> "$work/err"
        status=$?
        [ -s "$work/err" ] && echo "PROBLEM: '$command' wrote on stderr: $(head -c 200 "$work/err")"
        [ "$(wc -l < "$work/out")" = 1 ] && grep -q '^Score: ' "$work/out" || echo "PROBLEM: '$command' printed more than its Score line"
        echo "$status $command"
    done
}
cp "$BUILD/solutions/01-iterative/server" "$work/checkout/build/labs/01-iterative/server"
run_all > "$work/solution.txt"
grep -v '^0 ' "$work/solution.txt" | grep -v '^PROBLEM' && fail "a test failed on the reference solution"
printf '#!/bin/sh\necho "not a server" >&2\nexit 1\n' > "$work/checkout/build/labs/01-iterative/server"
chmod 755 "$work/checkout/build/labs/01-iterative/server"
run_all > "$work/broken.txt"
grep -q '^1 .*IterativeStart.ReadyLine' "$work/broken.txt" || fail "ReadyLine passed for a broken server"
grep -h '^PROBLEM' "$work/solution.txt" "$work/broken.txt" && fail "the commands misbehave"
head -n 3 "$work/solution.txt"

echo
[ $failures -eq 0 ] && echo "classroom: generated files and commands are right" || echo "classroom: $failures problem(s)"
[ $failures -eq 0 ]
