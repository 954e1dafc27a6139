#!/usr/bin/env bash
# Throughput of seedship-diskprep into an image file on local disk, next to dd of the same bytes.
#
#   [CEILING=1] diskprep/bench/throughput.sh [GIB] [WORKDIR]
#
# GIB: size of the staging location (default 4; fractions allowed). WORKDIR: where staging and the image go
# (default /tmp/seedship-bench; needs about 2.1 x GIB free and is removed at the end). Builds the release binary
# and the make_staging example, writes a staging job of incompressible data (1 GiB volumes, job.json with
# BLAKE3), then times:
#   1. seedship-diskprep with its default read-back verification (--pbkdf pbkdf2, --create-image)
#   2. seedship-diskprep --no-verify
#   3. the disk's own limit in the same sitting: dd of the staging volumes into an image with
#      iflag=direct oflag=direct bs=8M conv=fsync (the same disk reads as diskprep does: diskprep reads
#      staging with O_DIRECT), then dd iflag=direct of that image to /dev/null (the read-back)
#   4. the same copy and read-back from a buffer on 2 MiB huge pages (a few lines of Python): dd's buffer is
#      in 4 KiB pages, which split a direct request into many small ones, and diskprep's are not, so this is
#      the disk's limit for large requests (both ratios are printed)
# and prints GB/s (10^9 bytes per second of staging data), CPU seconds (user + sys) per GB and the peak RSS
# of each diskprep run (/usr/bin/time -v), then each diskprep run's wall time as a ratio to the disk's limit:
# with verification against dd's write plus its read-back, without against dd's write alone (targets
# >= 0.85 and >= 0.9), the CPU seconds per GB against their targets (<= 1.5 with verification, <= 0.8 without),
# whether each run was CPU-bound, disk-bound or neither (cores busy, time against dd's), dd's own
# CPU per GB, and OpenSSL's AES-256-XTS on one core (the machine's floor for the encryption share). The load
# average before and after is printed: other work on the machine slows wall times more than CPU seconds.
#
# CEILING=1 also runs diskprep with and without read-back into an image on tmpfs (/dev/shm, needs about
# 1.1 x GIB free there; the staging stays in WORKDIR) and prints those figures labelled
# "CPU ceiling (tmpfs, no disk)": what diskprep reaches when no disk limits it. Next to them it times dd of
# zeros into the same tmpfs: the kernel's own cost of a tmpfs write. In a virtual machine that hands freed
# memory back to its host (virtio-balloon free page reporting), each 4 KiB page a tmpfs write touches first
# is a fault into the host, and that alone can cost several CPU seconds per GB. So, run as root, CEILING=1
# also mounts a tmpfs of 2 MiB pages (huge=always) in WORKDIR, writes and removes a file of the image's
# size there just before each run (the memory is then backed), and prints those runs labelled "CPU ceiling
# (huge-page tmpfs, memory backed)": diskprep's own ceiling.
set -euo pipefail

GIB="${1:-4}"
WORK="${2:-/tmp/seedship-bench}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

cd "$ROOT"
# Built into $CARGO_TARGET_DIR when it is set (else target/). DISKPREP=<binary> times another build of
# seedship-diskprep instead (an earlier commit's, for a before/after in one sitting); make_staging is built
# either way.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q -p seedship-diskprep --bin seedship-diskprep --example make_staging
DISKPREP="${DISKPREP:-$TARGET_DIR/release/seedship-diskprep}"
MAKE="$TARGET_DIR/release/examples/make_staging"

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
HUGETMP="$WORK/huge-tmpfs"
cleanup() {
    if mountpoint -q "$HUGETMP" 2> /dev/null; then umount "$HUGETMP"; fi
    rm -rf "$WORK/staging" "$WORK/drive.img" "$WORK/dd.img" "$WORK/time.txt" "$WORK/hugecopy.py" "$SHM" "$HUGETMP"
}
trap cleanup EXIT

echo "== $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $GIB GiB staging in $WORK ($(df -PT "$WORK" | awk 'NR == 2 { print $2 }')), $DISKPREP"
"$MAKE" "$WORK/staging" "$GIB"
# The staging files stay in the page cache, but their writeback must not compete with the first run's writes.
sync
BYTES=$(python3 -c 'import json,sys; print(sum(b["len"] for b in json.load(open(sys.argv[1]))["blobs"]))' "$WORK/staging/job1/job.json")
IMAGE_MIB=$(( BYTES / 1048576 + 128 ))

now() { date +%s.%N; }
rate() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.2f GB/s (%.1f s)", b / s / 1e9, s }'; }

# pretouch: with PRETOUCH=DIR, backs that tmpfs's memory first (see CEILING above): writes and removes a
# file of the image's size there.
pretouch() {
    if [ -n "${PRETOUCH:-}" ]; then
        dd if=/dev/zero of="$PRETOUCH/pretouch" bs=1M count="$IMAGE_MIB" status=none
        rm -f "$PRETOUCH/pretouch"
    fi
}

# prep LABEL [IMAGE] -- [diskprep options]: one diskprep run into IMAGE (default $WORK/drive.img).
prep() {
    local label="$1" image="$WORK/drive.img"; shift
    if [ "${1:-}" != "--" ] && [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then image="$1"; shift; fi
    [ "${1:-}" = "--" ] && shift
    rm -rf "$image" "$WORK/staging/job1/diskprep"
    sync
    pretouch
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
    LAST_CPU=$cpu
    LAST_CPU_GB=$per_gb
    echo "$label: $(rate "$LAST"), CPU ${cpu} s (user+sys, ${per_gb} s per GB), peak RSS $((rss / 1024)) MiB"
}

prep "diskprep (read-back verify)"
T_VERIFY=$LAST
CPU_VERIFY=$LAST_CPU
CPU_GB_VERIFY=$LAST_CPU_GB
prep "diskprep --no-verify" --no-verify
T_NOVERIFY=$LAST
CPU_NOVERIFY=$LAST_CPU
CPU_GB_NOVERIFY=$LAST_CPU_GB
rm -rf "$WORK/drive.img" "$WORK/staging/job1/diskprep"

# cpu_of FILE: user+sys seconds from a `/usr/bin/time -f '%U %S'` output file.
cpu_of() { awk '{ s += $1 + $2 } END { printf "%.2f", s }' "$1"; }
per_gb() { awk -v c="$1" -v b="$BYTES" 'BEGIN { printf "%.2f", c / (b / 1e9) }'; }

dd_all() {
    local label="$1"; shift
    rm -f "$WORK/dd.img"
    local t0 t1
    t0=$(now)
    # One dd per 1 GiB staging volume, each at its offset in the image, timed together (CPU of all dd runs).
    /usr/bin/time -f '%U %S' -o "$WORK/time.txt" bash -c '
        out=$1; shift; i=0
        for v in "$@"; do
            dd if="$v" of="$out" bs=8M seek=$((i * 128)) conv=notrunc,fsync iflag=direct oflag=direct status=none
            i=$((i + 1))
        done' _ "$WORK/dd.img" "$WORK"/staging/job1/blobs/data/*
    t1=$(now)
    LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    local cpu
    cpu=$(cpu_of "$WORK/time.txt")
    echo "$label: $(rate "$LAST"), CPU ${cpu} s ($(per_gb "$cpu") s per GB)"
}
dd_all "dd write bs=8M iflag=direct oflag=direct conv=fsync"
T_DD_WRITE=$LAST
t0=$(now)
/usr/bin/time -f '%U %S' -o "$WORK/time.txt" dd if="$WORK/dd.img" of=/dev/null bs=8M iflag=direct status=none
LAST=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
cpu=$(cpu_of "$WORK/time.txt")
echo "dd read-back bs=8M iflag=direct: $(rate "$LAST"), CPU ${cpu} s ($(per_gb "$cpu") s per GB)"
T_DD_READ=$LAST
T_DISK=$(awk -v a="$T_DD_WRITE" -v b="$T_DD_READ" 'BEGIN { print a + b }')
echo "disk limit with read-back (dd write + dd read): $(rate "$T_DISK")"
ratio() { awk -v d="$1" -v p="$2" 'BEGIN { printf "%.2f", d / p }'; }

# dd's 8 MiB buffer lies in small (4 KiB) pages: a direct request can carry at most max_segments of them
# (254 on virtio-blk, under 1 MiB), so dd's write is split into many small requests. diskprep's buffers are
# on 2 MiB huge pages (MADV_HUGEPAGE), whose requests go out whole (up to max_sectors_kb), which on this
# virtual disk is much faster. The same copy as dd's, from a huge-page buffer (Python, O_DIRECT, 8 MiB at a
# time, fsync at the end), shows what the disk does with large requests: the fairer limit.
cat > "$WORK/hugecopy.py" <<'PY'
import ctypes, mmap, os, sys
BUF, HUGE = 8 << 20, 2 << 20
m = mmap.mmap(-1, BUF + HUGE)
m.madvise(mmap.MADV_HUGEPAGE)
off = -ctypes.addressof(ctypes.c_char.from_buffer(m)) % HUGE
view = memoryview(m)[off:off + BUF]
def each(path):
    fd, at = os.open(path, os.O_RDONLY | os.O_DIRECT), 0
    while (n := os.preadv(fd, [view], at)) > 0:
        yield n
        at += n
    os.close(fd)
if sys.argv[1] == "write":
    out, pos = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600), 0
    for path in sys.argv[3:]:
        for n in each(path):
            os.pwritev(out, [view[:n]], pos)
            pos += n
    os.fsync(out)
else:
    for _ in each(sys.argv[2]):
        pass
PY
rm -f "$WORK/dd.img"
t0=$(now)
/usr/bin/time -f '%U %S' -o "$WORK/time.txt" python3 "$WORK/hugecopy.py" write "$WORK/dd.img" "$WORK"/staging/job1/blobs/data/*
T_HUGE_WRITE=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
echo "huge-page copy write (O_DIRECT, 8 MiB, 2 MiB pages): $(rate "$T_HUGE_WRITE"), CPU $(cpu_of "$WORK/time.txt") s"
t0=$(now)
/usr/bin/time -f '%U %S' -o "$WORK/time.txt" python3 "$WORK/hugecopy.py" read "$WORK/dd.img"
T_HUGE_READ=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
echo "huge-page copy read-back: $(rate "$T_HUGE_READ"), CPU $(cpu_of "$WORK/time.txt") s"
T_HUGE=$(awk -v a="$T_HUGE_WRITE" -v b="$T_HUGE_READ" 'BEGIN { print a + b }')
rm -f "$WORK/dd.img"

echo "speed relative to the disk (dd time / diskprep time; 1.00 = as fast as dd):"
echo "  with read-back verify: $(ratio "$T_DISK" "$T_VERIFY") of dd write + read-back (target >= 0.85), $(ratio "$T_HUGE" "$T_VERIFY") of the huge-page copy's"
echo "  --no-verify:           $(ratio "$T_DD_WRITE" "$T_NOVERIFY") of dd write (target >= 0.9), $(ratio "$T_HUGE_WRITE" "$T_NOVERIFY") of the huge-page copy's"
echo "CPU per GB (targets: <= 1.5 with read-back verify, <= 0.8 without): ${CPU_GB_VERIFY} with, ${CPU_GB_NOVERIFY} without"
# What limits each run: the CPU when its CPU seconds fill every core for its whole wall time (at least 90%),
# the disk when it is within 10% of dd's time; otherwise neither is saturated (the stages wait for one
# another, or other work on the machine takes the cores: see the load average).
bound() {
    awk -v c="$1" -v w="$2" -v d="$3" -v n="$(nproc)" 'BEGIN {
        busy = c / w
        v = (busy >= 0.9 * n) ? "CPU-bound" : (w <= 1.1 * d) ? "disk-bound" : "neither saturated"
        printf "%s (%.2f of %d cores busy, %.2fx the disk'"'"'s time)", v, busy, n, w / d }'
}
echo "limit: with read-back verify $(bound "$CPU_VERIFY" "$T_VERIFY" "$T_DISK")"
echo "       --no-verify $(bound "$CPU_NOVERIFY" "$T_NOVERIFY" "$T_DD_WRITE")"
if command -v openssl > /dev/null; then
    # The machine's own AES-XTS (OpenSSL, AES-NI, one core, 4 KiB sectors as on a LUKS drive) as a floor for
    # the encryption share: diskprep encrypts every byte once and decrypts it once more when verifying.
    xts() { openssl speed -seconds 2 -bytes 4096 "$@" -evp aes-256-xts 2> /dev/null | awk '/^AES-256-XTS/ { sub(/k$/, "", $2); printf "%.2f", 1e9 / ($2 * 1000) }'; }
    echo "AES-256-XTS floor (openssl speed, 1 core, 4 KiB): encrypt $(xts) CPU-s per GB, decrypt $(xts -decrypt) CPU-s per GB"
fi

if [ "$CEILING" = 1 ]; then
    rm -f "$WORK/dd.img"
    mkdir -p "$SHM"
    # tmpfs_write DIR LABEL: dd of as many zeros as the staging holds into DIR, the kernel's own cost
    tmpfs_write() {
        local t0
        pretouch
        t0=$(now)
        /usr/bin/time -f '%U %S' -o "$WORK/time.txt" dd if=/dev/zero of="$1/zero" bs=8M count=$(( BYTES / 8388608 )) status=none
        LAST=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
        rm -f "$1/zero"
        local cpu
        cpu=$(cpu_of "$WORK/time.txt")
        echo "$2: $(rate "$LAST"), CPU ${cpu} s ($(per_gb "$cpu") s per GB)"
    }
    tmpfs_write "$SHM" "CPU ceiling (tmpfs, no disk): dd of zeros into /dev/shm (the kernel's own tmpfs write)"
    prep "CPU ceiling (tmpfs, no disk): diskprep (read-back verify)" "$SHM/drive.img"
    T_CEIL_VERIFY=$LAST
    prep "CPU ceiling (tmpfs, no disk): diskprep --no-verify" "$SHM/drive.img" --no-verify
    T_CEIL_NOVERIFY=$LAST
    rm -rf "$SHM" "$WORK/staging/job1/diskprep"
    echo "disk runs as a share of the CPU ceiling (ceiling time / disk time):"
    echo "  with read-back verify: $(ratio "$T_CEIL_VERIFY" "$T_VERIFY"), --no-verify: $(ratio "$T_CEIL_NOVERIFY" "$T_NOVERIFY")"
    mkdir -p "$HUGETMP"
    if [ "$(id -u)" = 0 ] && mount -t tmpfs -o "huge=always,size=$(( IMAGE_MIB + 256 ))m,mode=0700" seedship-bench "$HUGETMP"; then
        PRETOUCH="$HUGETMP" tmpfs_write "$HUGETMP" "CPU ceiling (huge-page tmpfs, memory backed): dd of zeros (the kernel's own tmpfs write)"
        PRETOUCH="$HUGETMP" prep "CPU ceiling (huge-page tmpfs, memory backed): diskprep (read-back verify)" "$HUGETMP/drive.img"
        PRETOUCH="$HUGETMP" prep "CPU ceiling (huge-page tmpfs, memory backed): diskprep --no-verify" "$HUGETMP/drive.img" --no-verify
        rm -rf "$WORK/staging/job1/diskprep"
    else
        echo "CPU ceiling (huge-page tmpfs): left out (needs root to mount a tmpfs with huge=always)"
    fi
fi
echo "== done, load $(cut -d' ' -f1-3 /proc/loadavg)"
