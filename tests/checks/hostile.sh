#!/usr/bin/env bash
# Hostile submissions are contained: each is graded as failing, within its
# time, with the grader's memory bounded, no process of it left behind, and
# no score it claims reaching the results. Also shows the sandbox a server
# runs in (another user, a private network, limits) when the grader is root.
#
# Usage: BUILD=build bash tests/checks/hostile.sh   (run by tools/selftest)
set -u
BUILD=${BUILD:-build}
grader=$BUILD/tests/muxlab-grade
fixtures=$BUILD/tests/fixtures/01-iterative
work=$(mktemp -d "${TMPDIR:-/tmp}/muxlab-hostile.XXXXXX") || exit 1
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Private copies: their path tells their processes from those of other checks.
for name in fork_bomb endless_output cpu_spin daemonizes closes_stdout claims_score; do
    cp "$fixtures/hostile_$name" "$work/$name" || { echo "missing $fixtures/hostile_$name: run make"; exit 1; }
done

# grade NAME TAG SECONDS [grader arguments]: grades fixture NAME, checks that it
# fails, within SECONDS, and that nothing it started is still alive.
grade() {
    local name=$1 tag=$2 limit=$3
    shift 3
    local out=$work/$tag
    local timer=()
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -f %M -o "$out.rss")
    local start=$SECONDS
    "${timer[@]}" "$grader" --lab 01 --server "$work/$name" --json "$out.json" --junit "$out.xml" "$@" \
        > "$out.out" 2> "$out.err"
    local status=$? took=$((SECONDS - start))
    echo "--- $tag: exit $status in ${took}s: $(grep '^Score:' "$out.out")"
    [ $status -eq 1 ] || fail "$tag: the grader exited with $status, expected 1 (graded as failing)"
    [ $took -le "$limit" ] || fail "$tag: took ${took}s, more than ${limit}s"
    if ps -eo args= | grep -F "$work/$name" | grep -v grep > "$out.left"; then
        fail "$tag: processes left running: $(head -3 "$out.left")"
    fi
    [ "$(grep -c '^Score:' "$out.out")" = 1 ] || fail "$tag: expected exactly one Score line"
    if [ -s "$out.rss" ] && [ "$(tail -n 1 "$out.rss")" -gt 65536 ]; then
        fail "$tag: the grader grew to $(tail -n 1 "$out.rss") KiB"
    fi
    if command -v python3 > /dev/null; then
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["score"] <= d["max_score"]' "$out.json" \
            || fail "$tag: results.json is not valid"
    fi
}
expect() {  # expect TAG TEXT: the grader's output mentions TEXT
    grep -qF -- "$2" "$work/$1.out" || fail "$1: output lacks '$2'"
}
# scored TAG TEST passed|failed: how the grader's results.json scored TEST
# (points come from the rubric, so the check reads the verdict, not a total).
scored() {
    local got
    got=$(python3 -c 'import json, sys
for t in json.load(open(sys.argv[1]))["tests"]:
    if t["name"].endswith(" " + sys.argv[2]):
        print("passed" if t["score"] == t["max_score"] else "failed")' "$work/$1.json" "$2" 2>/dev/null)
    [ "$got" = "$3" ] || fail "$1: $2 ${got:-missing}, expected $3"
}

grade fork_bomb fork_bomb 40 --only Iterative.EchoesLine
scored fork_bomb Iterative.EchoesLine failed

grade endless_output endless_output 40 --only Iterative.EchoesLine
expect endless_output "MiB of output"
[ "$(wc -c < "$work/endless_output.out")" -lt 100000 ] || fail "endless_output: the report is too long"

grade cpu_spin cpu_limit 40 --only Iterative.EchoesLine,IterativeStart.HelpAndBadOptions --cpu-limit 1
expect cpu_limit "SIGXCPU"
scored cpu_limit Iterative.EchoesLine failed
scored cpu_limit IterativeStart.HelpAndBadOptions passed

# The wall-clock budget stops one test; the other results stand.
grade cpu_spin watchdog 30 --only Iterative.EchoesLine,IterativeStart.HelpAndBadOptions --timeout 2
expect watchdog "did not finish within its 2 s budget"
scored watchdog Iterative.EchoesLine failed
scored watchdog IterativeStart.HelpAndBadOptions passed

grade daemonizes daemonizes 40 --only Iterative.EchoesLine
expect daemonizes "daemonized"
scored daemonizes Iterative.EchoesLine failed

# Not waiting again for a server that never starts: the whole lab is quick.
grade closes_stdout closes_stdout 30
expect closes_stdout "it closed its stdout"
[ "$(grep -c 'not run: needs ' "$work/closes_stdout.out")" -ge 10 ] || fail "closes_stdout: dependent tests not reported as not run"

grade claims_score claims_score 40 --only Iterative.EchoesLine
scored claims_score Iterative.EchoesLine failed
if grep -l "1000/1000" "$work"/claims_score.out "$work"/claims_score.err "$work"/claims_score.json "$work"/claims_score.xml; then
    fail "claims_score: the server's fake score reached the grader's output"
fi

# Without root the server runs as the grader's own user: it still cannot
# write into the grader's output through /proc (the grader is not dumpable).
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
    # (As the same user it can stop the test process, which the budget ends.)
    setpriv --reuid 65534 --regid 65534 --clear-groups "$grader" --lab 01 --server "$work/claims_score" \
        --only Iterative.EchoesLine --timeout 10 > "$work/unprivileged.out" 2> "$work/unprivileged.err"
    echo "--- claims_score, grader not root: $(grep '^Score:' "$work/unprivileged.out")"
    grep -q "1000/1000" "$work/unprivileged.out" "$work/unprivileged.err" && fail "unprivileged: the fake score got through"
    # The ready line may or may not be scored before the server freezes the test process.
    grep -q "^Score: " "$work/unprivileged.out" || fail "unprivileged: no Score line"
    grep -Eq "^ +OK +Iterative.EchoesLine" "$work/unprivileged.out" && fail "unprivileged: EchoesLine passed"
fi

# The sandbox itself, seen from inside by a probe that reports and exits
# (its stderr reaches the ReadyLine failure message).
cat > "$work/probe.cpp" <<'PROBE'
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cstdio>
#include <cstring>
#include <string>
int main(int argc, char** argv) {
    (void)argc;
    rlimit nproc{}, cpu{};
    getrlimit(RLIMIT_NPROC, &nproc);
    getrlimit(RLIMIT_CPU, &cpu);
    int interfaces = -2;  // /proc/net/dev: two header lines, then one per interface
    if (FILE* dev = std::fopen("/proc/net/dev", "r")) {
        char line[512];
        while (std::fgets(line, sizeof line, dev)) ++interfaces;
        std::fclose(dev);
    }
    std::string dir = argv[0];
    dir = dir.substr(0, dir.rfind('/'));
    int file = open((dir + "/planted").c_str(), O_WRONLY | O_CREAT, 0644);
    std::fprintf(stderr, "probe uid=%u interfaces=%d nproc=%llu cpu=%llu write=%s\n", getuid(), interfaces,
                 static_cast<unsigned long long>(nproc.rlim_cur), static_cast<unsigned long long>(cpu.rlim_cur),
                 file >= 0 ? "yes" : "no");
    return 1;
}
PROBE
if ${CXX:-g++} -std=c++17 -o "$work/probe" "$work/probe.cpp" 2> "$work/probe.log"; then
    "$grader" --lab 01 --server "$work/probe" --only IterativeStart.ReadyLine > "$work/probe.out" 2>&1
    report=$(grep -o 'probe uid=.*' "$work/probe.out" | head -n 1)
    echo "--- sandbox as seen by a server: $report"
    [ -n "$report" ] || fail "probe: no report in the grader's message"
    case "$report" in *cpu=18446744073709551615*) fail "probe: no CPU limit" ;; esac
    if [ "$(id -u)" = 0 ]; then
        case "$report" in *" uid=0 "*|"probe uid=0 "*) fail "probe: the server ran as root" ;; esac
        case "$report" in *interfaces=1\ *) ;; *) fail "probe: the server sees more than loopback" ;; esac
        case "$report" in *write=no*) ;; *) fail "probe: the server could write into the grader's directory" ;; esac
        case "$report" in *nproc=18446744073709551615*) fail "probe: no process limit" ;; esac
    fi
else
    fail "probe: cannot compile: $(head -n 3 "$work/probe.log")"
fi

# A memory hog stops at the memory limit (here 64 MiB), not at the machine's.
cat > "$work/hog.cpp" <<'HOG'
#include <cstdio>
#include <cstdlib>
#include <cstring>
int main() {
    size_t total = 0;
    for (; total < (size_t{2} << 30); total += 16 << 20) {
        void* block = std::malloc(16 << 20);
        if (block == nullptr) break;
        std::memset(block, 1, 16 << 20);
    }
    std::fprintf(stderr, "hog stopped at %zu MiB\n", total >> 20);
    return 1;
}
HOG
if ${CXX:-g++} -std=c++17 -o "$work/hog" "$work/hog.cpp" 2> "$work/hog.log"; then
    "$grader" --lab 01 --server "$work/hog" --only IterativeStart.ReadyLine --memory-limit 64 > "$work/hog.out" 2>&1
    stopped=$(sed -n 's/.*hog stopped at \([0-9]*\) MiB.*/\1/p' "$work/hog.out" | head -n 1)
    echo "--- memory hog with --memory-limit 64: stopped at ${stopped:-?} MiB"
    [ -n "$stopped" ] && [ "$stopped" -le 64 ] || fail "hog: not stopped by the memory limit"
else
    fail "hog: cannot compile: $(head -n 3 "$work/hog.log")"
fi

echo
[ $failures -eq 0 ] && echo "hostile: all contained" || echo "hostile: $failures problem(s)"
[ $failures -eq 0 ]
