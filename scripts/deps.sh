#!/bin/sh
# Installs the Debian packages memtap needs that are missing, asking apt only
# for what is absent.  Usage: scripts/deps.sh [GROUP]...  (default: build test)
#   build  compiling memtap        test   compiling and running the tests
#   peers  real programs the tests start (a test skips, saying so, when one
#          of these could not be installed)
#   bench  the peers `make bench` compares against
# Not root: prints the apt-get command to run.
set -u

build="gcc g++ make pkg-config libc6-dev zlib1g-dev libncurses-dev libelf-dev libdw-dev libiberty-dev libunwind-dev protobuf-c-compiler libprotobuf-c-dev libbpf-dev bpftool clang llvm libzydis-dev"
test="libcmocka-dev jq procps util-linux libtsan2 libapr1-dev libc6-dbg"
peers="apache2 curl chromium tmux prometheus libjemalloc2 libjemalloc-dev valgrind golang-go libtcmalloc-minimal4 libmimalloc2.0 redis-server redis-tools wrk bpftrace nginx-light postgresql"
bench="heaptrack valgrind bpftrace hyperfine"

groups=${*:-build test}
want=""
for g in $groups; do
	case $g in
	build) want="$want $build" ;;
	test) want="$want $test" ;;
	peers) want="$want $peers" ;;
	bench) want="$want $bench" ;;
	*) echo "deps.sh: unknown group '$g' (build, test, peers, bench)" >&2; exit 2 ;;
	esac
done

missing=""
for p in $want; do
	case " $missing " in *" $p "*) continue ;; esac
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
	[ "$st" = "install ok installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "memtap needs these Debian packages:$missing" >&2
	echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Do not let package scripts start services (apache2 would take port 80).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e $policy ]; then
	printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && made_policy=1
fi
rc=0
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends $missing >/tmp/memtap-deps.log 2>&1 || rc=$?
[ $made_policy = 1 ] && rm -f $policy
if [ $rc != 0 ]; then
	echo "deps: apt-get install failed ($rc); see /tmp/memtap-deps.log:" >&2
	tail -5 /tmp/memtap-deps.log >&2
	exit $rc
fi
