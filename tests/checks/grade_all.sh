#!/usr/bin/env bash
# A fake course graded in one command: seven submissions built at test time
# from the reference solutions and the hostile fixtures (correct, partly
# correct, not compiling, hostile, empty, a whole-kit copy, a name with a
# comma), graded by course/grade-all; checks the CSV rows, each JSON, the
# JUnit file, the per-test rows and the failure clusters.
#
# Usage: BUILD=build bash tests/checks/grade_all.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-course.XXXXXX") || exit 1
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
course=$work/submissions
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# submit STUDENT LAB SOURCE: puts SOURCE as the student's labs/LAB/server.cpp.
submit() {
    mkdir -p "$course/$1/$2"
    cp "$3" "$course/$1/$2/server.cpp"
}
one=01-iterative two=02-fork
submit alice $one solutions/$one/server.cpp            # everything right
submit alice $two solutions/$two/server.cpp
submit bob $one solutions/$one/server.cpp              # stage 02: the parent keeps a
sed 's/^\( *\)pid_t child = fork();/\1(void)dup(client.get());\n&/' \
    solutions/$two/server.cpp > "$work/leaky.cpp"         # copy of every client socket
grep -q 'dup(client.get())' "$work/leaky.cpp" || fail "cannot make bob's bug: the reference changed"
submit bob $two "$work/leaky.cpp"
{ cat solutions/$one/server.cpp; echo 'this line is not C++'; } > "$work/broken.cpp"
submit carol $one "$work/broken.cpp"                   # lab 01 does not compile
submit carol $two solutions/$two/server.cpp
submit dave $one tests/fixtures/$one/hostile_daemonizes.cpp     # hostile
submit dave $two tests/fixtures/$one/hostile_closes_stdout.cpp
mkdir -p "$course/erin"                                # handed in nothing
mkdir -p "$course/frank/labs" "$course/frank/notes"    # a copy of the whole kit
echo "notes" > "$course/frank/notes/todo.md"
(cd "$course/frank" && mkdir -p labs/$one labs/$two &&
    cp "$OLDPWD/solutions/$one/server.cpp" labs/$one/ && cp "$OLDPWD/solutions/$two/server.cpp" labs/$two/)
submit "grace, jr" $one solutions/$one/server.cpp      # a comma in the name
submit "grace, jr" $two "$work/broken.cpp"             # (lab 01's code in lab 02: does not compile)

start=$SECONDS
course/grade-all "$course" --build "$BUILD" --out "$work/out" --labs 01,02 --jobs 2 > "$work/grade-all.log" 2>&1
status=$?
echo "grade-all: exit $status in $((SECONDS - start)) s"
cat "$work/grade-all.log"
[ $status -eq 0 ] || fail "grade-all exited with $status"
out=$work/out
echo "--- grades.csv"
cat "$out/grades.csv"

max01=$("$BUILD/tests/muxlab-grade" --list --lab 01 | awk '{s += $3} END {print s}')
max02=$("$BUILD/tests/muxlab-grade" --list --lab 02 | awk '{s += $3} END {print s}')
max=$((max01 + max02))
row() { grep "^$1," "$out/grades.csv"; }
expect_row() {  # expect_row STUDENT REGEX
    row "$1" | grep -Eq "^$2\$" || fail "row of $1 is '$(row "$1")', expected /$2/"
}
[ "$(head -n 1 "$out/grades.csv")" = "student,$one,$two,total,max,not_built" ] || fail "CSV header"
[ "$(wc -l < "$out/grades.csv")" = 8 ] || fail "expected a header and 7 rows"
expect_row alice "alice,$max01,$max02,$max,$max,"
expect_row bob "bob,$max01,[0-9]+,[0-9]+,$max,"
bob02=$(row bob | cut -d, -f3)
[ "$bob02" -gt 0 ] && [ "$bob02" -lt "$max02" ] || fail "bob's lab 02 should be partly right ($bob02/$max02)"
expect_row carol "carol,0,$max02,$max02,$max,01"
expect_row dave "dave,[0-9]+,[0-9]+,[0-9]+,$max,"
dave=$(row dave | cut -d, -f4)
[ "$dave" -lt $((max / 4)) ] || fail "the hostile submission got $dave/$max"
expect_row erin "erin,0,0,0,$max,01 02"
expect_row frank "frank,$max01,$max02,$max,$max,"
grep -q "^\"grace, jr\",$max01,0,$max01,$max,02\$" "$out/grades.csv" || fail "row of 'grace, jr'"

# Feedback: the compiler's message, the daemon note, the skipped dependents.
if command -v python3 > /dev/null; then
    for student in alice bob carol dave erin frank "grace, jr"; do
        python3 - "$out/$student/results.json" <<'PY' || fail "$student/results.json is not valid Gradescope JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d["score"], (int, float)) and isinstance(d["execution_time"], (int, float))
assert isinstance(d["output"], str) and d["tests"]
for t in d["tests"]:
    assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(t), t
    assert t["status"] in ("passed", "failed") and 0 <= t["score"] <= t["max_score"]
assert d["score"] == sum(t["score"] for t in d["tests"])
PY
    done
    python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$out/junit.xml" || fail "junit.xml is not XML"
fi
grep -q "does not compile" "$out/carol/results.json" || fail "carol's feedback lacks 'does not compile'"
grep -q "error:" "$out/carol/results.json" || fail "carol's feedback lacks the compiler's error"
grep -q "not run: needs the lab to compile" "$out/carol/results.json" || fail "carol: dependents not reported as not run"
grep -q "daemonized" "$out/dave/results.json" || fail "dave's feedback lacks the daemon note"
grep -q "not run: needs IterativeStart.ReadyLine" "$out/dave/results.json" || fail "dave: dependents not reported as not run"
grep -q "no $one/server.cpp (no .cpp file in $one/) in the submission" "$out/erin/results.json" || fail "erin's feedback"
[ "$(grep -c '<testsuite ' "$out/junit.xml")" = 14 ] || fail "junit.xml: expected 7 x 2 testsuites"
grep -q '<testsuite name="bob/02-fork"' "$out/junit.xml" || fail "junit.xml: suites named STUDENT/LAB"
grep -q '^==== carol' "$out/failures.log" || fail "failures.log"
[ -f "$out/carol/build-01.log" ] && grep -q "error" "$out/carol/build-01.log" || fail "carol's build log"

# Per test: one row per student and test; the clusters put bob's bug (his
# children keep every client socket open) among the failures, with its reason.
tests01=$("$BUILD/tests/muxlab-grade" --list --lab 01,02 | wc -l)
[ "$(head -n 1 "$out/tests.csv")" = "student,lab,test,status,points,max,reason" ] || fail "tests.csv header"
[ "$(wc -l < "$out/tests.csv")" = $((1 + 7 * tests01)) ] || fail "tests.csv: expected 7 x $tests01 rows"
grep -Eq "^alice,$one,IterativeStart.ReadyLine,passed,([0-9]+),\\1,\$" "$out/tests.csv" || fail "tests.csv: alice's first row"
grep -q "^carol,$one,[A-Za-z.]*,failed,0,[0-9]*,lab 01-iterative does not compile" "$out/tests.csv" \
    || fail "tests.csv: carol's build failure"
grep -q "^carol,$one,[A-Za-z.]*,not-run," "$out/tests.csv" || fail "tests.csv: carol's tests that could not run"
[ "$(grep -c . "$out/erin/tests.csv")" = $((1 + tests01)) ] || fail "erin/tests.csv"
echo "--- clusters.txt"
cat "$out/clusters.txt"
grep -Eq "^ +[1-9][0-9]* +[0-9]+  $two Fork\.ParentClosesClientSockets " "$out/clusters.txt" \
    || fail "clusters.txt does not show bob's leak (Fork.ParentClosesClientSockets)"
grep -q "Failure clusters: 7 submissions" "$work/grade-all.log" || fail "grade-all did not print the clusters"

echo
[ $failures -eq 0 ] && echo "grade_all: the fake course graded right" || echo "grade_all: $failures problem(s)"
[ $failures -eq 0 ]
