#!/usr/bin/env bash
# Throughput of seedship-diskprep into an image file on local disk, next to dd of the same bytes.
#
#   [CEILING=1] diskprep/bench/throughput.sh [GIB] [WORKDIR]
#
# GIB: size of the staging location (default 4; fractions allowed). WORKDIR: where staging and the image go
# (default /tmp/seedship-bench; needs about 2 x GIB free and is removed at the end). Builds the release binary
# and the make_staging example, writes a staging job of incompressible data (1 GiB volumes, job.json with
# BLAKE3), then times:
#   1. seedship-diskprep with its default read-back verification (--pbkdf pbkdf2, --create-image)
#   2. seedship-diskprep --no-verify
#   3. dd of the staging volumes into an image, bs=8M oflag=direct conv=fsync
#   4. the same dd without oflag=direct (page cache, fsync at the end)
# and prints GB/s (10^9 bytes per second of staging data), CPU seconds (user + sys) per GB and the peak RSS
# of each diskprep run (/usr/bin/time -v), then each diskprep run's wall time as a ratio to dd's of the same
# run (on a shared machine the ratios and CPU seconds are steadier than GB/s). The staging files are in the page cache after being written (no cache drop: the
# figures measure diskprep's own work plus the writes, not the staging disk's read speed).
#
# CEILING=1 also runs diskprep with and without read-back into an image on tmpfs (/dev/shm, needs about
# 1.1 x GIB free there; the staging stays in WORKDIR, in the page cache) and prints those figures labelled
# "CPU ceiling (tmpfs, no disk)": what diskprep reaches when no disk limits it.
set -euo pipefail

GIB="${1:-4}"
WORK="${2:-/tmp/seedship-bench}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

cd "$ROOT"
cargo build --release -q -p seedship-diskprep --bin seedship-diskprep --example make_staging
DISKPREP="$ROOT/target/release/seedship-diskprep"
MAKE="$ROOT/target/release/examples/make_staging"

need_kib=$(awk -v g="$GIB" 'BEGIN { printf "%d", g * 2.1 * 1048576 }')
mkdir -p "$WORK"
avail_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt "$need_kib" ]; then
    echo "need $need_kib KiB free in $WORK, have $avail_kib" >&2
    exit 1
fi
CEILING="${CEILING:-0}"
SHM=/dev/shm/seedship-bench-$$
if [ "$CEILING" = 1 ]; then
    shm_need_kib=$(awk -v g="$GIB" 'BEGIN { printf "%d", g * 1.1 * 1048576 + 131072 }')
    shm_avail_kib=$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')
    if [ "$shm_avail_kib" -lt "$shm_need_kib" ]; then
        echo "CEILING=1: need $shm_need_kib KiB free in /dev/shm, have $shm_avail_kib" >&2
        exit 1
    fi
fi
rm -rf "$WORK/staging" "$WORK/drive.img" "$WORK/dd.img"
trap 'rm -rf "$WORK/staging" "$WORK/drive.img" "$WORK/dd.img" "$WORK/time.txt" "$SHM"' EXIT

echo "== $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $GIB GiB staging in $WORK ($(df -PT "$WORK" | awk 'NR == 2 { print $2 }'))"
"$MAKE" "$WORK/staging" "$GIB"
# The staging files stay in the page cache, but their writeback must not compete with the first run's writes.
sync
BYTES=$(python3 -c 'import json,sys; print(sum(b["len"] for b in json.load(open(sys.argv[1]))["blobs"]))' "$WORK/staging/job1/job.json")
IMAGE_MIB=$(( BYTES / 1048576 + 128 ))

now() { date +%s.%N; }
rate() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.2f GB/s (%.1f s)", b / s / 1e9, s }'; }

# prep LABEL [IMAGE] -- [diskprep options]: one diskprep run into IMAGE (default $WORK/drive.img).
prep() {
    local label="$1" image="$WORK/drive.img"; shift
    if [ "${1:-}" != "--" ] && [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then image="$1"; shift; fi
    [ "${1:-}" = "--" ] && shift
    rm -rf "$image" "$WORK/staging/job1/diskprep"
    sync
    local t0 t1
    t0=$(now)
    /usr/bin/time -v -o "$WORK/time.txt" "$DISKPREP" "s:$WORK/staging" --drive "$image" \
        --create-image "${IMAGE_MIB}M" --yes --pbkdf pbkdf2 --no-create-job -q "$@" > /dev/null
    t1=$(now)
    local rss cpu
    rss=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")
    cpu=$(awk -F: '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$WORK/time.txt")
    LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    local per_gb
    per_gb=$(awk -v c="$cpu" -v b="$BYTES" 'BEGIN { printf "%.2f", c / (b / 1e9) }')
    echo "$label: $(rate "$LAST"), CPU ${cpu} s (user+sys, ${per_gb} s per GB), peak RSS $((rss / 1024)) MiB"
}

prep "diskprep (read-back verify)"
T_VERIFY=$LAST
prep "diskprep --no-verify" --no-verify
T_NOVERIFY=$LAST
rm -rf "$WORK/drive.img" "$WORK/staging/job1/diskprep"

dd_all() {
    local label="$1"; shift
    rm -f "$WORK/dd.img"
    local t0 t1 i=0
    t0=$(now)
    for v in "$WORK"/staging/job1/blobs/data/*; do
        dd if="$v" of="$WORK/dd.img" bs=8M seek=$((i * 128)) conv=notrunc,fsync "$@" status=none
        i=$((i + 1))
    done
    t1=$(now)
    LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    echo "$label: $(rate "$LAST")"
}
dd_all "dd bs=8M oflag=direct conv=fsync" oflag=direct
T_DD_DIRECT=$LAST
dd_all "dd bs=8M conv=fsync"
T_DD=$LAST
ratio() { awk -v d="$1" -v p="$2" 'BEGIN { printf "%.2f", d / p }'; }
echo "speed relative to dd (dd time / diskprep time; 1.00 = as fast as dd):"
echo "  with read-back verify: $(ratio "$T_DD_DIRECT" "$T_VERIFY") of dd oflag=direct, $(ratio "$T_DD" "$T_VERIFY") of dd via the page cache"
echo "  --no-verify:           $(ratio "$T_DD_DIRECT" "$T_NOVERIFY") of dd oflag=direct, $(ratio "$T_DD" "$T_NOVERIFY") of dd via the page cache"

if [ "$CEILING" = 1 ]; then
    rm -f "$WORK/dd.img"
    mkdir -p "$SHM"
    prep "CPU ceiling (tmpfs, no disk): diskprep (read-back verify)" "$SHM/drive.img"
    T_CEIL_VERIFY=$LAST
    prep "CPU ceiling (tmpfs, no disk): diskprep --no-verify" "$SHM/drive.img" --no-verify
    T_CEIL_NOVERIFY=$LAST
    rm -rf "$SHM" "$WORK/staging/job1/diskprep"
    echo "disk runs as a share of the CPU ceiling (ceiling time / disk time):"
    echo "  with read-back verify: $(ratio "$T_CEIL_VERIFY" "$T_VERIFY"), --no-verify: $(ratio "$T_CEIL_NOVERIFY" "$T_NOVERIFY")"
fi
