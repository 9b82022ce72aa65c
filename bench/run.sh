#!/bin/sh
# make bench: fan-out benchmark against real sshd hosts on loopback
# (certpush vs the SSH floor, an rsync loop and pssh), then the Go
# benchmarks of scale (10,000-host plan, 1,000-endpoint status), the
# plan with a fake dialer (cmd/certpush BenchmarkPlanFakeDial), of the
# node side and of pull mode (no-op pull and publish against versitygw,
# PULL_NODES nodes converging after a
# publish). Results go to bench/results/ and into BENCHMARKS.md.
#
# Environment: SIZES (default 10,100,200), REPS (3), PARALLEL (64),
# RSYNC_MAX (largest size the sequential rsync loop runs at; default 200),
# RTTS (round-trip times of the delay-proxy runs, ms; 0,10,50),
# RTT_SIZES (their sizes; 1,100), PULL_NODES (50).
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
SIZES=${SIZES:-10,100,200}
REPS=${REPS:-3}
PARALLEL=${PARALLEL:-64}
RSYNC_MAX=${RSYNC_MAX:-200}

need() {
	for b in "$@"; do
		command -v "$b" >/dev/null 2>&1 || [ -x "$b" ] || return 1
	done
}
if ! need parallel-ssh parallel-scp rsync ssh /usr/sbin/sshd /usr/lib/openssh/sftp-server; then
	if [ "$(id -u)" != 0 ]; then
		echo "bench: need root to install pssh rsync openssh-client openssh-server" >&2
		exit 2
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q pssh rsync openssh-client openssh-server openssh-sftp-server
fi
command -v go >/dev/null || { echo "bench: go not found" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "bench: building" >&2
# Built as the packages build them (packaging/deb.sh): static, stripped.
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/certpush" ./cmd/certpush
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/certnode" ./cmd/certnode
go build -o "$tmp/fanout" ./bench/fanout

mkdir -p bench/results
# The least-privilege path (forced command, sudo -n, root's certnode)
# runs beside the root path when this runs as root with sudo.
lp=
if [ "$(id -u)" = 0 ] && command -v sudo >/dev/null && command -v visudo >/dev/null; then
	lp=-lp
else
	echo "bench: not root or no sudo: the least-privilege path is left out" >&2
fi
echo "bench: fan-out, sizes $SIZES, $REPS runs each" >&2
"$tmp/fanout" -certpush "$tmp/certpush" -certnode "$tmp/certnode" $lp \
	-sizes "$SIZES" -reps "$REPS" -parallel "$PARALLEL" -rsync-max "$RSYNC_MAX" \
	-md BENCHMARKS.md -json bench/results/fanout.json | tee bench/results/fanout.md

# The same push with the fleet on tmpfs: every simulated host's certnode
# then does its file work without the shared disk's journal and flushes.
if [ -d /dev/shm ]; then
	echo "bench: fan-out with the fleet on tmpfs, 100 hosts" >&2
	TMPDIR=/dev/shm "$tmp/fanout" -certpush "$tmp/certpush" -certnode "$tmp/certnode" \
		-methods floor,push -sizes 100 -reps "$REPS" -parallel "$PARALLEL" \
		-md BENCHMARKS.md -section fanout-tmpfs -json bench/results/fanout-tmpfs.json | tee bench/results/fanout-tmpfs.md
fi

# Round trips: a delay proxy in front of each sshd, one host alone and
# RTT_SIZES hosts at once.
echo "bench: round trips at ${RTTS:-0,10,50} ms RTT" >&2
"$tmp/fanout" -certpush "$tmp/certpush" -certnode "$tmp/certnode" \
	-rtt "${RTTS:-0,10,50}" -rtt-sizes "${RTT_SIZES:-1,100}" -reps "$REPS" \
	-md BENCHMARKS.md -section fanout-rtt -json bench/results/fanout-rtt.json | tee bench/results/fanout-rtt.md

echo "bench: Go benchmarks (scale, node, pull)" >&2
out=bench/results/gobench.txt
{
	echo '```'
	CERTPUSH_BIN="$tmp/certpush" go test -run '^$' -bench 'Plan|InventoryHeap' -benchtime 2x ./bench/scale
	CERTPUSH_BIN="$tmp/certpush" go test -run '^$' -bench Status -benchtime 3x ./bench/scale
	echo "bench: the plan in process with a fake dialer refused at once (no kernel dials), one size a process:"
	go test -run '^$' -bench 'PlanFakeDial/hosts=10000$' -benchtime 1x ./cmd/certpush
	go test -run '^$' -bench 'PlanFakeDial/hosts=100000$' -benchtime 1x ./cmd/certpush
	CERTNODE_BIN="$tmp/certnode" go test -run '^$' -bench . -benchtime 50x ./bench/node
	echo "bench: node install again with the certnode root on tmpfs (no disk flush cost):"
	TMPDIR=/dev/shm go test -run '^$' -bench 'Install$' -benchtime 50x ./bench/node
	echo "bench: pull mode in process and as a process (no-op pull: one 304), against versitygw:"
	CERTNODE_BENCH_BIN="$tmp/certnode" go test -run '^$' -bench 'PullNotModified|PullProcess|Publish' -benchtime 30x ./internal/pull
	echo "bench: pull mode, ${PULL_NODES:-50} nodes (nginx each) pulling at once after a publish:"
	CERTPUSH_BIN="$tmp/certpush" CERTNODE_BIN="$tmp/certnode" PULL_NODES="${PULL_NODES:-50}" \
		go test -run '^$' -bench PullConverge -benchtime 3x -timeout 20m ./bench/pull
	echo '```'
} | grep -v '^goos\|^goarch\|^pkg\|^cpu\|^PASS' | tee "$out"

# Put the Go benchmark output into BENCHMARKS.md.
awk -v f="$out" '
	index($0, "<!-- gobench:begin -->") { print; while ((getline l < f) > 0) print l; skip = 1; next }
	index($0, "<!-- gobench:end -->") { skip = 0 }
	!skip
' BENCHMARKS.md >"$tmp/md" && cat "$tmp/md" >BENCHMARKS.md
echo "bench: results in BENCHMARKS.md and bench/results/" >&2
