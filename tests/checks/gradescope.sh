#!/usr/bin/env bash
# The Gradescope autograder, run locally: packs the zip, unpacks it into a
# fake /autograder tree (AUTOGRADER_ROOT), runs setup.sh (without apt-get;
# the grader objects of BUILD are reused when up to date) and run_autograder
# on two submissions, and checks each results.json.
#
# Usage: BUILD=build bash tests/checks/gradescope.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-gradescope.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

course/gradescope/make-zip --out "$work" --labs 01,02 || exit 1
zip=$work/autograder-01-02.zip
unzip -l "$zip" | grep -q ' setup.sh$' || fail "no setup.sh at the top of the zip"
unzip -l "$zip" | grep -q ' run_autograder$' || fail "no run_autograder at the top of the zip"
if unzip -l "$zip" | grep -Eq ' (solutions|labs|tests/fixtures)/'; then fail "the zip holds solutions, labs or fixtures"; fi

root=$work/autograder
mkdir -p "$root/source" "$root/results"
unzip -q "$zip" -d "$root/source"
# What setup.sh would compile, already compiled: same sources, same rules.
mkdir -p "$root/source/build/tests"
cp -pR "$BUILD/common" "$root/source/build/"
for part in harness grader stages libharness.a muxlab-grade rubric_text.cpp rubric_text.o rubric_text.d; do
    [ -e "$BUILD/tests/$part" ] && cp -pR "$BUILD/tests/$part" "$root/source/build/tests/"
done
AUTOGRADER_ROOT=$root MUXLAB_SKIP_PACKAGES=1 bash "$root/source/setup.sh" > "$work/setup.log" 2>&1 \
    || { cat "$work/setup.log"; fail "setup.sh failed"; }
cp "$root/source/run_autograder" "$root/run_autograder"

max01=$("$BUILD/tests/muxlab-grade" --list --lab 01 | awk '{s += $3} END {print s}')
tests12=$("$BUILD/tests/muxlab-grade" --list --lab 01,02 | wc -l)

# submission TAG EXPECTED_SCORE: runs the autograder on $root/submission.
check_submission() {
    local tag=$1 expected=$2
    rm -rf "$root/results"/*
    AUTOGRADER_ROOT=$root "$root/run_autograder" > "$work/$tag.log" 2>&1 || fail "$tag: run_autograder failed"
    local results=$root/results/results.json
    [ -s "$results" ] || { fail "$tag: no results.json"; cat "$work/$tag.log"; return; }
    cp "$results" "$work/$tag.json"
    echo "--- $tag: $(grep -m1 '"score"' "$results" | tr -d ' ,')"
    if command -v python3 > /dev/null; then
        python3 - "$results" "$expected" "$tests12" <<'PY' || fail "$tag: results.json is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
expected, count = int(sys.argv[2]), int(sys.argv[3])
assert d["score"] == expected, (d["score"], expected)
assert isinstance(d["execution_time"], (int, float)) and isinstance(d["output"], str)
assert len(d["tests"]) == count, (len(d["tests"]), count)
for t in d["tests"]:
    assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(t)
    assert t["status"] in ("passed", "failed")
PY
    else
        grep -q "\"score\": $expected," "$results" || fail "$tag: score is not $expected"
    fi
}

# A zip upload with one top folder holding labs/: lab 01 right, lab 02 not compiling.
mkdir -p "$root/submission/my-muxlab/labs/01-iterative" "$root/submission/my-muxlab/labs/02-fork"
cp solutions/01-iterative/server.cpp "$root/submission/my-muxlab/labs/01-iterative/"
echo 'int main() { return missing; }' > "$root/submission/my-muxlab/labs/02-fork/server.cpp"
check_submission nested "$max01"
grep -q "does not compile" "$work/nested.json" || fail "nested: no compiler message for lab 02"

# Nothing usable: still a valid results.json, scoring 0.
rm -rf "$root/submission" && mkdir -p "$root/submission"
echo "hello" > "$root/submission/README.txt"
check_submission empty 0

echo
[ $failures -eq 0 ] && echo "gradescope: run_autograder wrote valid results" || echo "gradescope: $failures problem(s)"
[ $failures -eq 0 ]
