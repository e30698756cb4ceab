# shellcheck shell=bash
# Shell functions shared by the course scripts (sourced, not run).

# lab_names SPEC [LABS_DIR]: the lab folder names SPEC selects, one a line, in
# order. SPEC is a comma-separated list of lab numbers (03), names
# (03-threads) and ranges (01-05); "all" or nothing is every lab. LABS_DIR
# (default: the kit's labs/) holds one folder per lab.
lab_names() {
    local spec=${1:-all} labs_dir=${2:-$kit/labs} token all name number from to found
    all=$(cd "$labs_dir" && for name in [0-9][0-9]-*/; do echo "${name%/}"; done)
    [ "$spec" = all ] && { echo "$all"; return; }
    for token in $(echo "$spec" | tr ',' ' '); do
        found=
        if [[ $token =~ ^([0-9]{2})-([0-9]{2})$ ]]; then
            from=$((10#${BASH_REMATCH[1]})) to=$((10#${BASH_REMATCH[2]}))
            for name in $all; do
                number=$((10#${name%%-*}))
                [ "$number" -ge "$from" ] && [ "$number" -le "$to" ] && { echo "$name"; found=1; }
            done
        else
            for name in $all; do
                [ "$name" = "$token" ] || [ "${name%%-*}" = "$token" ] && { echo "$name"; found=1; }
            done
        fi
        [ -n "$found" ] || { echo "no lab '$token' in $labs_dir" >&2; return 1; }
    done | sort -u
}

# kit_version: the kit's commit (short), "-dirty" when its working tree has
# changes, or "unknown" outside git.
kit_version() {
    local commit
    commit=$(git -C "$kit" rev-parse --short=12 HEAD 2> /dev/null) || { echo unknown; return; }
    [ -z "$(git -C "$kit" status --porcelain 2> /dev/null)" ] || commit="$commit-dirty"
    echo "$commit"
}

# kit_files PATH...: the kit's files under each PATH, one a line: what git
# tracks plus new files it does not ignore (so build output never ships), or
# every file when the kit is not a git checkout.
kit_files() {
    if git -C "$kit" rev-parse --git-dir > /dev/null 2>&1; then
        (cd "$kit" && git ls-files --cached --others --exclude-standard -- "$@" |
            while read -r file; do [ -f "$file" ] && echo "$file"; done)
    else
        (cd "$kit" && find "$@" -type f 2> /dev/null | sort)
    fi
}

# commit_as_course GIT-ARGS...: git commit with the user's identity, or a
# neutral one where git has none (a fresh machine, a CI job).
commit_as_course() {
    if [ -n "$(git config user.email 2> /dev/null)" ]; then
        git "$@"
    else
        git -c user.name="muxlab course" -c user.email="course@muxlab.invalid" "$@"
    fi
}

# default_kit_url: where a Classroom workflow can fetch a commit of this kit,
# when its origin remote is on GitHub ({commit} is filled in later); else "".
default_kit_url() {
    local origin
    origin=$(git -C "$kit" remote get-url origin 2> /dev/null) || return 0
    origin=${origin%.git}
    case "$origin" in
        git@github.com:*) echo "https://github.com/${origin#git@github.com:}/archive/{commit}.tar.gz" ;;
        https://github.com/*) echo "$origin/archive/{commit}.tar.gz" ;;
    esac
}
