#!/bin/bash
# The CLI's conventions: help for every command (memtap help CMD and
# memtap CMD --help alike), a top-level usage with every form, -V, usage
# errors prefixed with memtap: and followed by one line pointing at --help,
# and the error messages that used to mislead (issue 14).
. "$(dirname "$0")/../lib.sh"
cmds="run attach detach ctl report diff demo help"
plan 36

out=$($MEMTAP 2>&1); rc=$?
is "$rc" 2 "memtap without a command is a usage error"
for form in "memtap run \[OPTIONS\]" "memtap run --via=ebpf" "memtap attach -p PID \[--via=inject\]" \
	"memtap attach -p PID --via=ebpf" "memtap detach -p PID" "memtap ctl PID COMMAND" \
	"memtap report" "memtap diff" "memtap demo" "memtap help \[COMMAND\]" "memtap -V"; do
	grep -q -- "$form" <<<"$out"; ok $? "the top-level usage lists '$form'"
done
unlike_readme=$(grep -c README <<<"$out")
is "$unlike_readme" 0 "the usage points at the man pages, not at README.md (which need not be installed)"

for c in $cmds; do
	a=$($MEMTAP help "$c" 2>&1); ra=$?
	b=$($MEMTAP "$c" --help 2>&1); rb=$?
	[ "$ra" = 0 ] && [ "$rb" = 0 ] && [ "$a" = "$b" ] && grep -q "^usage: memtap $c" <<<"$a"
	ok $? "memtap help $c and memtap $c --help print $c's usage (exit 0)"
done

is "$($MEMTAP -V)" "$($MEMTAP --version)" "-V is --version"
like "$($MEMTAP -V)" "^memtap [0-9]+\.[0-9]+" "which names memtap and a version"

# getopt errors: prefixed, one pointer to --help, no page of usage.
for args in "run --bogus -- true" "report --zz x.mtp" "diff --top" "detach --nope" "run -x -- true" "attach -p"; do
	# shellcheck disable=SC2086
	err=$($MEMTAP $args 2>&1); rc=$?
	first=$(head -1 <<<"$err"); second=$(sed -n 2p <<<"$err"); n=$(wc -l <<<"$err")
	cmd=${args%% *}
	[ "$rc" = 2 ] && [ "$n" = 2 ] && [[ $first == "memtap: $cmd: "*option* ]] &&
		[ "$second" = "Try 'memtap $cmd --help' for more information." ]
	ok $? "memtap $args: 'memtap: $cmd: ...option...' and one line pointing at --help (got: $first | $second)"
done

err=$($MEMTAP run --sample=0 -- true 2>&1); rc=$?
[ "$rc" = 2 ] && grep -q "must be at least 1" <<<"$err" && ! grep -q "expected a size" <<<"$err"
ok $? "--sample=0: must be at least 1"
err=$($MEMTAP run --dump-every=0 -- true 2>&1)
like "$err" "must be at least 1" "--dump-every=0: must be at least 1"

err=$($MEMTAP run -q -- "$TMP" 2>&1); rc=$?
[ "$rc" != 0 ] && grep -q "is a directory, not a program" <<<"$err" && ! grep -q "Permission denied" <<<"$err"
ok $? "run DIRECTORY says it is a directory, not 'Permission denied'"

err=$(bash -c 'exec "$0" attach -p $$ -d 1' "$MEMTAP" 2>&1); rc=$?
[ "$rc" = 2 ] && grep -q "is this memtap process itself" <<<"$err" && ! grep -qi "apparmor\|selinux\|as root" <<<"$err"
ok $? "attaching to memtap's own pid says so (no AppArmor, no run as root)"

err=$($MEMTAP frobnicate 2>&1); rc=$?
[ "$rc" = 2 ] && [ "$(head -1 <<<"$err")" = "memtap: unknown command 'frobnicate'" ] && [ "$(wc -l <<<"$err")" = 2 ]
ok $? "an unknown command: one line, then the pointer at --help"
err=$($MEMTAP help frobnicate 2>&1)
like "$err" "no command 'frobnicate'" "memtap help of an unknown command names the commands"
err=$($MEMTAP demo extra 2>&1); rc=$?
is "$rc" 2 "memtap demo with an argument is a usage error"
