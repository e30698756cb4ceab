#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image
# (Ubuntu 22.04 or later: the kit needs glibc 2.34). It installs what the
# kit needs and builds the grader, so each submission only builds its labs.
#
# Local test: AUTOGRADER_ROOT=/tmp/x/autograder MUXLAB_SKIP_PACKAGES=1 bash setup.sh
set -eu
root=${AUTOGRADER_ROOT:-/autograder}
cd "$root/source"
if [ -z "${MUXLAB_SKIP_PACKAGES:-}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends build-essential libgtest-dev patch ca-certificates > /dev/null
    tools/install-deps  # whatever else the kit needs, as it knows best
fi
make --no-print-directory -j"$(nproc)" BUILD=build grader build/common/libmuxlab.a
echo "muxlab autograder ready: $(build/tests/muxlab-grade --list $(cat muxlab-labs.conf 2>/dev/null | sed -n 's/^labs=\(..*\)/--lab \1/p') | wc -l) tests"
