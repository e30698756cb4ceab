#!/usr/bin/env bash
# GitHub Classroom: the workflow make handout generates pins the kit bundle
# it wrote (SHA-256) and grades with it; run here as the workflow runs it
# (the bundle unpacked, course/classroom/grade on a student's checkout),
# the grade comes from the course's grader and rubric even when the
# student's copies of the tests, the rubric and the Makefile were changed,
# and those changes are listed; a commit archive of the kit grades the same
# way. The per-test commands print one line, nothing on stderr, and exit 0
# exactly when their test passed.
#
# Usage: BUILD=build bash tests/checks/classroom.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
kit=$(pwd)
case "$BUILD" in /*) build=$BUILD ;; *) build=$kit/$BUILD ;; esac
unset BUILD MAKEFLAGS MFLAGS MAKELEVEL
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-classroom.XXXXXX") || exit 1
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
export MUXLAB_SKIP_PACKAGES=1  # the kit's packages are here already
lab=01-iterative
tests=$("$build/tests/muxlab-grade" --list --lab 01 | wc -l)
max=$("$build/tests/muxlab-grade" --list --lab 01 | awk '{s += $3} END {print s}')

# ---- the workflow of a handout, pinned to its kit bundle -------------------------------------
course/handout --out "$work/handout" --labs 01 --build "$build" --bundle-dir "$work/bundle" \
    --kit-url 'https://example.org/{release}/muxlab-kit.tar.gz' > "$work/handout.log" 2>&1 ||
    { cat "$work/handout.log"; fail "make handout KIT_URL=... failed"; exit 1; }
workflow=$work/handout/.github/workflows/classroom.yml
bundle=$work/bundle/muxlab-kit-release-1.tar.gz
[ -f "$workflow" ] && [ -f "$bundle" ] || { fail "no workflow or no kit bundle"; exit 1; }
sha=$(sha256sum "$bundle" | cut -d' ' -f1)
grep -q "MUXLAB_KIT_SHA256: '$sha'" "$workflow" || fail "the workflow does not pin the bundle's SHA-256"
grep -q "MUXLAB_KIT_URL: 'https://example.org/release-1/muxlab-kit.tar.gz'" "$workflow" || fail "the workflow's kit URL"
grep -q "MUXLAB_LABS: '$lab'" "$workflow" || fail "the workflow's labs"
if grep -n 'build/tests/muxlab-grade\|make grade' "$workflow"; then fail "the workflow grades with the student's copy"; fi
if tar -tzf "$bundle" | grep -E '/(solutions|labs|notes|tests/fixtures)/'; then fail "the bundle holds more than the grading files"; fi
if command -v python3 > /dev/null && python3 -c 'import yaml' 2> /dev/null; then
    python3 - "$workflow" "$tests" "$max" <<'PY' || fail "classroom.yml"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
steps = d["jobs"]["run-autograding-tests"]["steps"]
graders = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-command-grader")]
assert len(graders) == int(sys.argv[2]), len(graders)
assert sum(s["with"]["max-score"] for s in graders) == int(sys.argv[3])
for s in graders:
    assert s["id"][0].isalpha()
    assert s["with"]["command"].startswith("kit/course/classroom/result grading "), s
grade = [s for s in steps if "run" in s and "course/classroom/grade" in s["run"]]
assert len(grade) == 1 and "sha256sum --check" in grade[0]["run"] and grade[0]["continue-on-error"]
reporter = steps[-1]
runners = reporter["with"]["runners"].split(",")
assert runners == [s["id"] for s in graders]
for s in graders:
    assert reporter["env"][s["id"].upper() + "_RESULTS"] == "${{steps.%s.outputs.result}}" % s["id"]
PY
fi

# ---- the workflow's grading step, here: the bundle unpacked, its grader built ------------------
mkdir -p "$work/run/kit"
tar -xzf "$bundle" -C "$work/run/kit" --strip-components=1
mkdir -p "$work/run/kit/build/tests/stages"  # what it would compile, compiled already
cp -pR "$build/common" "$work/run/kit/build/"
cp -pR "$build/tests/harness" "$build/tests/grader" "$build/tests/libharness.a" "$work/run/kit/build/tests/"
cp -pR "$build/tests/stages/$lab" "$work/run/kit/build/tests/stages/"
git clone -q "$work/handout" "$work/run/submission"
(
    cd "$work/run/submission" || exit 1
    cp "$kit/solutions/$lab/server.cpp" "labs/$lab/server.cpp"
    # A student who bends the copies of the course's files in the repository:
    sed -i 's/^\(Iterative\.EchoesLine *\)[0-9]*/\1 800/' "tests/stages/$lab/rubric.txt"
    echo 'TEST(Iterative, Free) {}' >> "tests/stages/$lab/contract.cpp"
    echo 'CXXFLAGS += -DGRADED' >> Makefile
    echo '// mine' > tests/stages/$lab/extra.cpp
)
# run_all: every per-test command of the workflow, in the job's folder;
# prints "STATUS TEST" lines and PROBLEM lines.
run_all() {
    sed -n 's/^ *command: //p' "$workflow" | while read -r command; do
        (cd "$work/run" && eval "$command") > "$work/out" 2> "$work/err"
        status=$?
        [ -s "$work/err" ] && echo "PROBLEM: '$command' wrote on stderr: $(head -c 200 "$work/err")"
        [ "$(wc -l < "$work/out")" = 1 ] || echo "PROBLEM: '$command' printed $(wc -l < "$work/out") lines"
        echo "$status ${command##* }"
    done
}
(cd "$work/run" && kit/course/classroom/grade submission "$lab" grading) > "$work/grade.log" 2>&1 ||
    { tail -n 30 "$work/grade.log"; fail "course/classroom/grade failed"; }
grep -q "^Score: $max/$max\$" "$work/grade.log" || { tail -n 30 "$work/grade.log"; fail "the reference solution is not graded $max/$max by the course's kit"; }
for change in "changed  tests/stages/$lab/rubric.txt" "changed  tests/stages/$lab/contract.cpp" \
              "changed  Makefile" "added    tests/stages/$lab/extra.cpp"; do
    grep -qF "$change" "$work/run/grading/kit-files-changed.txt" || fail "not reported: $change"
done
[ "$(wc -l < "$work/run/grading/kit-files-changed.txt")" = 4 ] || fail "reported: $(cat "$work/run/grading/kit-files-changed.txt")"
sed -n '/^Course files that differ/,$p' "$work/grade.log"
run_all > "$work/solution.txt"
grep -v '^0 ' "$work/solution.txt" && fail "a test step failed on the reference solution"

# A lab that does not compile: every step fails (and says so on one line).
echo 'int main() { return missing; }' > "$work/run/submission/labs/$lab/server.cpp"
rm -rf "$work/run/grading"
(cd "$work/run" && kit/course/classroom/grade submission "$lab" grading) > "$work/grade-broken.log" 2>&1 || fail "grading a broken lab failed"
run_all > "$work/broken.txt"
[ "$(grep -c '^1 ' "$work/broken.txt")" = "$tests" ] || fail "a test step passed on a lab that does not compile"
grep -h '^PROBLEM' "$work/solution.txt" "$work/broken.txt" && fail "the test steps misbehave"
# No grading at all (the kit could not be fetched): every step fails, on one line.
rm -rf "$work/run/grading"
run_all > "$work/none.txt"
[ "$(grep -c '^1 ' "$work/none.txt")" = "$tests" ] || fail "a test step passed without grading"
(cd "$work/run" && eval "$(sed -n 's/^ *command: //p' "$workflow" | head -n 1)") | grep -q 'not graded' || fail "no 'not graded' message"

# ---- a commit of the kit as the pinned kit (here: this kit itself) ----------------------------
mkdir -p "$work/bykit"
(cd "$work/bykit" && "$kit/course/classroom/grade" "$work/run/submission" "$lab" grading) > "$work/grade-kit.log" 2>&1 ||
    { tail -n 20 "$work/grade-kit.log"; fail "grading with the kit itself failed"; }
grep -q "^Score: 0/$max\$" "$work/grade-kit.log" || fail "the kit itself: $(grep '^Score' "$work/grade-kit.log")"
grep -qF "changed  tests/stages/$lab/rubric.txt" "$work/bykit/grading/kit-files-changed.txt" ||
    fail "the kit itself: the changed rubric is not reported"

# make classroom: the workflow alone.
course/classroom/generate --labs 01 --kit-url 'https://example.org/muxlab/archive/{commit}.tar.gz' \
    --out "$work/alone" > /dev/null || fail "course/classroom/generate failed"
grep -q "MUXLAB_KIT_URL: 'https://example.org/muxlab/archive/$(git rev-parse HEAD).tar.gz'" "$work/alone/workflows/classroom.yml" ||
    fail "make classroom: the kit commit is not pinned"

echo
[ $failures -eq 0 ] && echo "classroom: the workflow grades with the course's kit" || echo "classroom: $failures problem(s)"
[ $failures -eq 0 ]
