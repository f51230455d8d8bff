#!/bin/bash
# make install with PREFIX and DESTDIR puts the man pages, the bash
# completion and the docs beside the CLI; man renders every page without a
# warning; the completion, sourced (no interactive bash), completes a
# command, an option and an option's value from the same tables the parser
# uses.
. "$(dirname "$0")/../lib.sh"
command -v man >/dev/null || skip_all "man (package man-db) is not installed"
pages="memtap memtap-run memtap-attach memtap-detach memtap-ctl memtap-report memtap-diff memtap-demo memtap-help"
plan 20

make -s -C "$ROOT" install PREFIX=/opt/mt DESTDIR="$TMP/dest" >/dev/null
ok $? "make install PREFIX=/opt/mt DESTDIR=..."
inst="$TMP/dest/opt/mt"
[ -x "$inst/bin/memtap" ] && [ -f "$inst/share/bash-completion/completions/memtap" ] &&
	[ -f "$inst/share/doc/memtap/README.md" ]
ok $? "installs bin/memtap, share/bash-completion/completions/memtap and share/doc/memtap/README.md"

for p in $pages; do
	f="$inst/share/man/man1/$p.1"
	w=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
	txt=$(MANWIDTH=80 man -l "$f" 2>/dev/null)
	[ -f "$f" ] && [ -z "$w" ] && grep -q "^NAME" <<<"$txt" && grep -q "^SYNOPSIS" <<<"$txt"
	ok $? "man -l $p.1 renders NAME and SYNOPSIS with no warnings${w:+ (warnings: $w)}"
done

# Every option of run's table is in its page (one source for both).
txt=$(MANWIDTH=200 man -l "$inst/share/man/man1/memtap-run.1" 2>/dev/null)
missing=""
for o in $("$MEMTAP" run --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
	grep -q -- "$o" <<<"$txt" || missing="$missing $o"
done
is "$missing" "" "memtap-run.1 documents every option memtap run --help lists"
txt=$(MANWIDTH=200 man -l "$inst/share/man/man1/memtap-ctl.1" 2>/dev/null)
like "$txt" "dump \[PATH\]" "memtap-ctl.1 lists ctl's commands"

comp() { # comp WORD... : what the completion offers for the last word
	COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
	_memtap; echo "${COMPREPLY[*]}"
}
# shellcheck disable=SC1091
source "$inst/share/bash-completion/completions/memtap"
is "$(comp memtap rep)" "report" "completes a command: memtap rep -> report"
is "$(comp memtap report --mer)" "--merge" "completes an option: memtap report --mer -> --merge"
is "$(comp memtap run --sta)" "--stacks" "completes an option of run's table: --sta -> --stacks"
is "$(comp memtap report --format = js)" "json" "completes an option's value: --format=js -> json"
is "$(comp memtap ctl 1 deac)" "deactivate" "completes ctl's command after the pid"
like "$(comp memtap attach --)" "--via=.*--full-stacks" "attach's options come from options.def"
# An option added to the table would show up: every option of --help is offered.
offered=$(comp memtap diff --)
missing=""
for o in $("$MEMTAP" diff --help | grep -E '^ +(-[a-zA-Z], )?--' | grep -o -- '--[a-z][a-z-]*' | head -20); do
	grep -q -- "$o" <<<"$offered" || missing="$missing $o"
done
is "$missing" "" "the completion offers every option of memtap diff --help"
