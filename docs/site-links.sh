#!/bin/sh
# Usage: docs/site-links.sh DOCS_DIR PAGE.md...   (from the repository root; `make docs` runs it)
#
# Doxygen turns Markdown links between .md pages into links between HTML
# pages, but leaves a link to any other file (`[rubric](../../tests/rubric.txt)`,
# or a picture: `![plot](../bench/results/idle-latency.svg)`) as it was
# written: relative to the Markdown file, which means nothing inside the
# generated site. Such a link is right on a code host, so rather than
# forbid it, this script points it at the page made from that file or, for a
# file with no page, at a copy in DOCS_DIR/repo/. A link to a file that does
# not exist fails the build, like a Doxygen warning.
#
# With --sources instead of DOCS_DIR (run before Doxygen), it only checks that
# every relative Markdown link in the pages leads to an existing file, and
# names the file and line of each that does not: Doxygen's own message for a
# link to a missing page is the cryptic "unexpected token TK_EOF".
set -eu
docs=${1:?usage: docs/site-links.sh DOCS_DIR|--sources PAGE.md...}
shift
status=0

if [ "$docs" = --sources ]; then
    broken=$(for source in "$@"; do
        dir=$(dirname "$source")
        # "LINE:](TARGET)" for each inline link outside code spans (good enough here).
        grep -n -o '\]([^) ]*)' "$source" | sed 's/\](\(.*\))$/\1/' |
        while IFS=: read -r line target; do
            case $target in *:*|'#'*|'') continue ;; esac
            if [ ! -e "$dir/${target%%#*}" ]; then
                echo "$source:$line: link to ${target%%#*}: no such file" >&2
                echo bad
            fi
        done
    done | grep -c bad || true)
    [ "$broken" -eq 0 ]
    exit
fi

for source in "$@"; do
    # The HTML page Doxygen made from this Markdown file.
    case $source in
        docs/mainpage.md) page=$docs/index.html ;;
        *) page=$docs/md_$(printf '%s' "${source%.md}" | tr '/.-' '___').html ;;
    esac
    [ -f "$page" ] || continue
    dir=$(dirname "$source")
    # Links (and pictures: src) Doxygen left alone: not a URL, not an anchor,
    # not a file of the site.
    for href in $(grep -o '\(href\|src\)="[^"]*"' "$page" | sed 's/^[a-z]*="//; s/"$//; s/#.*//' |
                  grep -v ':' | grep . | sort -u); do
        case $href in
            ../*) ;;
            *) if [ -e "$docs/$href" ]; then continue; fi ;;
        esac
        target=$(realpath -m --relative-to=. "$dir/$href")
        case $target in ../*) target=missing ;; esac
        if [ -f "$target" ]; then
            case $target in
                *.md) link=md_$(printf '%s' "${target%.md}" | tr '/.-' '___').html ;;
                *) link=repo/$target ;;
            esac
            if [ ! -e "$docs/$link" ]; then
                mkdir -p "$docs/repo/$(dirname "$target")"
                cp "$target" "$docs/repo/$target"
                link=repo/$target
            fi
            sed -i "s|href=\"$href\"|href=\"$link\"|g; s|href=\"$href#|href=\"$link#|g" "$page"
            sed -i "s|src=\"$href\"|src=\"$link\"|g" "$page"
        else
            echo "$source: link to $href: no such file" >&2
            status=1
        fi
    done
done
exit $status
