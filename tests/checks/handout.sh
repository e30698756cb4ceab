#!/usr/bin/env bash
# A course's term in small: a handout of labs 01-02 (no solution, fixture or
# self-test in it, no broken link, every kit file in its manifest), where
# `make check-setup` says ready and `make grade` gives a copied reference
# solution full marks; students' repositories made from it the way GitHub
# Classroom makes them (a fresh history) and by a plain clone, with commits
# of their own; the second release (labs 01-03) as one commit that touches
# no student file, brought to them by course/release-to and by `git pull`,
# merging without conflicts; the untouched lab 03 skeleton graded below 10%;
# solutions published without their hole markers.
#
# Usage: BUILD=build bash tests/checks/handout.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
kit=$(pwd)
case "$BUILD" in /*) build=$BUILD ;; *) build=$kit/$BUILD ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-handout.XXXXXX") || exit 1
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
unset BUILD MAKEFLAGS MFLAGS MAKELEVEL  # the handout's make runs on its own, in its build/
export GIT_AUTHOR_NAME=student GIT_AUTHOR_EMAIL=student@example.org
export GIT_COMMITTER_NAME=student GIT_COMMITTER_EMAIL=student@example.org
handout=$work/handout

# seed DIR LAB...: the kit's compiled harness, grader and those labs'
# contracts, so DIR's make only links (same sources, same rules).
seed() {
    local dir=$1 lab
    shift
    mkdir -p "$dir/build/tests/stages"
    cp -pR "$build/common" "$dir/build/"
    cp -pR "$build/tests/harness" "$build/tests/grader" "$build/tests/unit" "$build/tests/libharness.a" "$dir/build/tests/"
    for lab in "$@"; do cp -pR "$build/tests/stages/$lab" "$dir/build/tests/stages/"; done
    find "$dir/build" -type f -exec touch {} +  # newer than the sources a clone just wrote
}
# score DIR LAB: "SCORE MAX" of `make grade LAB=LAB` in DIR.
score() {
    (cd "$1" && make --no-print-directory grade LAB="$2") > "$work/grade-$2.log" 2>&1
    sed -n 's/^Score: \([0-9]*\)\/\([0-9]*\)$/\1 \2/p' "$work/grade-$2.log" | tail -n 1
}
# student_files_hash DIR: one hash of every file a student wrote in DIR.
student_files_hash() {
    (cd "$1" && git ls-files | grep -v -e '^\.muxlab/' | while read -r f; do
        awk -v p="$f" '$2 == p {found = 1} END {exit !found}' .muxlab/kit-files.sha256 || sha256sum "$f"
    done | grep -v 'labs/03-threads/' | sha256sum)
}

# ---- release 1: labs 01-02 ------------------------------------------------------------------
start=$SECONDS
course/handout --out "$handout" --labs 01-02 --build "$build" > "$work/release1.log" 2>&1 ||
    { cat "$work/release1.log"; fail "make handout LABS=01-02 failed"; exit 1; }
cat "$work/release1.log"
cd "$handout" || exit 1
[ "$(git rev-list --count HEAD)" = 1 ] || fail "release 1 is not one commit"
[ -z "$(git status --porcelain)" ] || fail "the handout has uncommitted files: $(git status --porcelain | head -3)"
for path in solutions tests/fixtures tests/checks tools/selftest labs/03-threads tests/stages/03-threads bench docs; do
    [ ! -e "$path" ] || fail "the handout holds $path"
done
[ "$(ls labs)" = "$(printf '01-iterative\n02-fork')" ] || fail "labs/ holds $(ls labs | tr '\n' ' ')"
[ "$(ls tests/stages)" = "$(printf '01-iterative\n02-fork')" ] || fail "tests/stages/ holds $(ls tests/stages | tr '\n' ' ')"
for path in Makefile README.md .gitignore common tests/harness tests/grader tests/unit tools/install-deps \
            course/student.mk notes/README.md .muxlab/release; do
    [ -e "$path" ] || fail "the handout lacks $path"
done
grep -q 'make check-setup' README.md && grep -q 'make grade' README.md || fail "the student README lacks the two commands"
sha256sum --check --quiet .muxlab/kit-files.sha256 || fail "kit-files.sha256 does not match the handout"
listed=$( (awk '{print $2}' .muxlab/kit-files.sha256 .muxlab/student-files.sha256; echo .muxlab/kit-files.sha256;
           echo .muxlab/student-files.sha256; echo .muxlab/release) | sort)
[ "$listed" = "$(git ls-files | sort)" ] || fail "the manifest and the committed files differ: $(diff <(echo "$listed") <(git ls-files | sort) | head -4)"
if grep -rnF -e "$kit" -e "$build" --exclude-dir=.git . | head -3 | grep .; then fail "paths of this machine in the handout"; fi
# Every relative link of every Markdown file leads to a file of the handout.
broken=$(find . -name '*.md' -not -path './.git/*' | while read -r file; do
    grep -o '](\([^)# ]*\)' "$file" | sed 's/^](//' | grep -v '^[a-z]*:' | grep . | while read -r target; do
        [ -e "$(dirname "$file")/$target" ] || echo "$file -> $target"
    done
done)
[ -z "$broken" ] || fail "broken links: $(echo "$broken" | head -5)"

# A student's first command, then a reference solution graded in the handout.
seed "$handout" 01-iterative 02-fork
make --no-print-directory check-setup > "$work/check-setup.log" 2>&1 || fail "make check-setup failed"
tail -n 1 "$work/check-setup.log"
grep -q '^ready: 2 labs' "$work/check-setup.log" || { tail -n 20 "$work/check-setup.log"; fail "check-setup did not say ready"; }
cp "$kit/solutions/01-iterative/server.cpp" labs/01-iterative/server.cpp
read -r got max <<< "$(score "$handout" 01)"
echo "handout, lab 01 reference solution: ${got:-?}/${max:-?}"
[ -n "$got" ] && [ "$got" = "$max" ] || { tail -n 20 "$work/grade-01.log"; fail "the reference solution of lab 01 is not at full marks in the handout"; }
git checkout -q labs/01-iterative/server.cpp && rm -rf build
cd "$work" || exit 1
echo "-- release 1 checked, $((SECONDS - start)) s"

# ---- students' repositories, with work of their own --------------------------------------------
# alice: made the way GitHub Classroom makes it (the template's files in a
# fresh first commit, no shared history), on a server (a bare repository);
# bob: a plain clone of the handout (shared history).
mkdir -p fresh && git -C "$handout" archive HEAD | tar -x -C fresh
(cd fresh && git init -q -b main && git add -A && git commit -qm "Initial commit")
git clone -q --bare fresh alice.git && git clone -q alice.git alice
git clone -q "$handout" bob
for student in alice bob; do
    (cd "$student" &&
        cp "$kit/solutions/01-iterative/server.cpp" labs/01-iterative/server.cpp &&
        echo "// $student's lab 02, under way" >> labs/02-fork/server.cpp &&
        echo "what I learned" > journal.md &&
        git add -A && git commit -qm "lab 01 done, lab 02 started")
done
git -C alice push -q origin main
# carol (fresh history too) wrote lab 03 ahead of time and annotated a
# course file where release 2 changes it.
git clone -q --bare fresh carol.git && git clone -q carol.git carol
(cd carol && mkdir -p labs/03-threads && echo "// carol's early lab 03" > labs/03-threads/server.cpp &&
    sed -i 's/^| \[02-fork\].*/& (doing it)/' README.md && git add -A && git commit -qm "early start" && git push -q origin main)
echo "// not pushed yet" >> alice/labs/02-fork/server.cpp && git -C alice commit -qam "lab 02: more"
before_alice=$(student_files_hash alice) before_bob=$(student_files_hash bob)

# ---- release 2: labs 01-03, one commit ----------------------------------------------------------
course_head=$(git -C "$handout" rev-parse HEAD)
(cd "$kit" && course/handout --out "$handout" --labs 01-03 --build "$build") > "$work/release2.log" 2>&1 ||
    { cat "$work/release2.log"; fail "make handout LABS=01-03 failed"; }
cat "$work/release2.log"
[ "$(git -C "$handout" rev-list --count "$course_head..HEAD")" = 1 ] || fail "release 2 is not one commit"
touched=$(git -C "$handout" diff --name-only "$course_head" HEAD)
echo "$touched" | grep -qx labs/03-threads/server.cpp || fail "release 2 does not add the lab 03 skeleton"
echo "$touched" | grep -qx tests/stages/03-threads/rubric.txt || fail "release 2 does not add stage 03's rubric"
if echo "$touched" | grep -E '^labs/0[12]-[^/]*/[^/]*\.cpp$'; then fail "release 2 touches the skeletons of labs 01-02"; fi
(cd "$handout" && sha256sum --check --quiet .muxlab/kit-files.sha256) || fail "release 2: kit-files.sha256 does not match"
(cd "$kit" && course/handout --out "$handout" --build "$build") | grep -q 'up to date' || fail "a release without change made a commit"
[ "$(git -C "$handout" rev-list --count "$course_head..HEAD")" = 1 ] || fail "a second run of release 2 made a commit"

echo "-- release 2 made, $((SECONDS - start)) s"
# A skeleton already handed out is never rewritten, even where the course's
# copy and the kit's differ.
other=$work/other
"$kit/course/handout" --out "$other" --labs 01 --build "$build" > /dev/null 2>&1 || fail "make handout LABS=01 failed"
echo "// the course's own version" >> "$other/labs/01-iterative/server.cpp"
git -C "$other" commit -qam "our skeleton"
"$kit/course/handout" --out "$other" --labs 01-02 --build "$build" > /dev/null 2>&1 || fail "make handout LABS=01-02 failed"
grep -q "the course's own version" "$other/labs/01-iterative/server.cpp" || fail "a release rewrote a released skeleton"
[ -f "$other/labs/02-fork/server.cpp" ] || fail "the release of lab 02 did not add its skeleton"

# alice's repository gets it from course/release-to; alice pulls it onto her unpushed commit.
"$kit/course/release-to" --handout "$handout" alice.git > "$work/release-to.log" 2>&1 || fail "release-to failed"
cat "$work/release-to.log"
grep -q 'release 1 -> 2 (1 commit(s)), pushed' "$work/release-to.log" || fail "release-to did not push one commit"
if grep -q 'replaced\|kept' "$work/release-to.log"; then fail "release-to met a conflict"; fi
git -C alice pull -q --no-rebase --no-edit > "$work/pull-alice.log" 2>&1 || { cat "$work/pull-alice.log"; fail "alice's git pull did not merge"; }
"$kit/course/release-to" --handout "$handout" "$work/carol.git" alice.git > "$work/release-to-2.log" 2>&1 || fail "release-to (carol) failed"
cat "$work/release-to-2.log"
grep -q 'carol.git: release 1 -> 2 (1 commit(s)), pushed' "$work/release-to-2.log" || fail "release-to did not bring carol release 2"
grep -q 'student file kept: labs/03-threads/server.cpp' "$work/release-to-2.log" || fail "release-to: carol's lab 03 not named as kept"
grep -q 'course file replaced: README.md' "$work/release-to-2.log" || fail "release-to: carol's README not named as replaced"
grep -q 'alice.git: already at release 2' "$work/release-to-2.log" || fail "release-to: a second run touched alice"
git -C carol pull -q --no-rebase --no-edit > /dev/null 2>&1 || fail "carol's git pull did not merge"
grep -q "carol's early lab 03" carol/labs/03-threads/server.cpp || fail "release-to replaced carol's lab 03"
cmp -s carol/README.md "$handout/README.md" || fail "carol's README is not the course's"
# bob pulls the release from the handout (the template) itself: a merge, too.
git -C bob pull -q --no-rebase --no-edit "$handout" main > "$work/pull-bob.log" 2>&1 || { cat "$work/pull-bob.log"; fail "bob's git pull did not merge"; }
for student in alice bob; do
    [ -z "$(git -C "$student" diff --name-only --diff-filter=U)" ] || fail "$student: conflicts"
    [ -f "$student/labs/03-threads/server.cpp" ] || fail "$student did not get lab 03"
    [ "$(cd "$student" && git log --format=%s | grep -c '^Release 2')" = 1 ] || fail "$student: not one release commit"
    (cd "$student" && sha256sum --check --quiet "$handout/.muxlab/kit-files.sha256") || fail "$student: the course files are not release 2's"
    cmp -s "$student/labs/01-iterative/server.cpp" "$kit/solutions/01-iterative/server.cpp" || fail "$student's lab 01 changed"
    grep -q "$student's lab 02, under way" "$student/labs/02-fork/server.cpp" || fail "$student's lab 02 changed"
    [ -f "$student/journal.md" ] || fail "$student's journal.md is gone"
done
grep -q 'not pushed yet' alice/labs/02-fork/server.cpp || fail "alice's unpushed work is gone"
[ "$(student_files_hash alice)" = "$before_alice" ] || fail "the release changed one of alice's files"
[ "$(student_files_hash bob)" = "$before_bob" ] || fail "the release changed one of bob's files"

echo "-- release 2 delivered, $((SECONDS - start)) s"
# The untouched lab 03 skeleton, graded in alice's repository.
seed alice 01-iterative 02-fork 03-threads
read -r got max <<< "$(score alice 03)"
echo "alice, untouched lab 03 skeleton: ${got:-?}/${max:-?}"
[ -n "$got" ] && [ "$max" -gt 0 ] && [ $((got * 10)) -lt "$max" ] || { tail -n 20 "$work/grade-03.log"; fail "the lab 03 skeleton scores ${got:-?}/${max:-?}, not below 10%"; }

echo "-- lab 03 graded, $((SECONDS - start)) s"
# ---- solutions, without the skeleton generator's hole markers -------------------------------------
mkdir -p solutions/01-iterative
awk '{print} NR == 3 {print "    //@hole 1 Echo what arrives"; print "//@ What does read() return at the end?"; print "\t//@stub return 0;"; print "  //@end"}' \
    "$kit/solutions/01-iterative/server.cpp" > solutions/01-iterative/server.cpp
course_head=$(git -C "$handout" rev-parse HEAD)
"$kit/course/release-solutions" --out "$handout" --labs 01 --solutions "$work/solutions" > "$work/solutions.log" 2>&1 ||
    { cat "$work/solutions.log"; fail "release-solutions failed"; }
[ "$(git -C "$handout" rev-list --count "$course_head..HEAD")" = 1 ] || fail "the solutions are not one commit"
cmp -s "$handout/solutions/01-iterative/server.cpp" <("$build/tools/skeleton" --clean "$kit/solutions/01-iterative/server.cpp") ||
    fail "the published solution is not the reference without its markers"
(cd "$kit" && course/handout --out "$handout" --build "$build") | grep -q 'up to date' || fail "a release after the solutions made a commit"
[ -f "$handout/solutions/01-iterative/server.cpp" ] || fail "a release removed the published solutions"

echo
echo "handout: $((SECONDS - start)) s"
[ $failures -eq 0 ] && echo "handout: release, grading and updates behave" || echo "handout: $failures problem(s)"
[ $failures -eq 0 ]
