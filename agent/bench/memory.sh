#!/usr/bin/env bash
# Peak memory of a backup of many small files: builds a reproducible synthetic tree (FILES small files spread
# over folders of PER_DIR files, two levels of folders), then runs seedship-agent (`offline start` + `backup`,
# then `backup --another-snapshot` unchanged) and restic (initial and unchanged) on it under GNU time, and
# prints wall seconds, CPU seconds (user+sys) and peak RSS ("Maximum resident set size") of each run.
#
#   agent/bench/memory.sh [FILES] [WORK_DIR]        (defaults: 200000 files, a fresh temporary folder)
#   PER_DIR=500 ONLY=seedship agent/bench/memory.sh 400000
#   PER_DIR=1000000 agent/bench/memory.sh 1000000     (one folder of a million entries)
#   agent/bench/memory.sh all [WORK_DIR]             (100,000, 1,000,000 and 4,000,000 files, then one folder
#                                                    of 1,000,000; SIZES="100000 1000000" to choose)
#
# The tree is the same for the same FILES and PER_DIR (file i holds "file <i>\n" and its number's digits
# repeated, 16-80 bytes: every file is a distinct chunk). The work folder (tree and repositories) is removed
# at the end unless KEEP=1; with KEEP=1 a later run on the same WORK_DIR, FILES and PER_DIR reuses the tree
# (the repositories are made anew). Builds seedship-agent in release mode first when it is missing (SEEDSHIP_AGENT
# names another binary). Needs GNU time; restic (apt-get install restic) and rustic (cargo install --locked
# rustic-rs) are optional and measured when found on PATH. A small file takes a 4 KiB block: 4,000,000 of
# them need about 17 GB of disk in WORK_DIR.
set -euo pipefail
if [ "${1:-}" = all ]; then
  for n in ${SIZES:-100000 1000000 4000000}; do
    "$0" "$n" ${2:+"$2/$n"}
  done
  PER_DIR=1000000 "$0" 1000000 ${2:+"$2/one-folder"}
  exit
fi
FILES=${1:-200000}
PER_DIR=${PER_DIR:-500}
WORK=${2:-$(mktemp -d /tmp/seedship-membench.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${SEEDSHIP_AGENT:-$ROOT/target/release/seedship-agent}
PASS="benchmark passphrase, not secret"
TIME=/usr/bin/time
[ -x "$AGENT" ] || (cd "$ROOT" && cargo build --release -p seedship-agent)
[ -x "$TIME" ] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }
mkdir -p "$WORK"
cleanup() { if [ "${KEEP:-}" != 1 ]; then rm -rf "$WORK"; else echo "work folder kept: $WORK"; fi; }
trap cleanup EXIT

DATA="$WORK/tree"
MADE="$WORK/tree-made-$FILES-$PER_DIR"
rm -rf "$WORK/seedship-staging" "$WORK/seedship-state" "$WORK/restic" "$WORK/rustic"
start=$(date +%s)
if [ ! -e "$MADE" ]; then
rm -rf "$DATA"
# two levels of folders: d<top>/s<sub>/f<i>, PER_DIR files per leaf folder, about sqrt(leaves) per level
python3 - "$DATA" "$FILES" "$PER_DIR" <<'PY'
import math, os, sys
root, files, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
leaves = max(1, -(-files // per))
top = max(1, math.isqrt(leaves))
for i in range(files):
    leaf = i // per
    d = os.path.join(root, "d%04d" % (leaf % top), "s%05d" % leaf)
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d" % i), "w") as f:
        f.write("file %d\n%s\n" % (i, str(i) * (1 + i % 9)))
PY
touch "$MADE"
fi
dirs=$(find "$DATA" -type d | wc -l)
echo "tree: $FILES files in $dirs folders ($PER_DIR per leaf folder), made in $(( $(date +%s) - start )) s; cores: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"

RESULTS=()
# measure NAME PHASE CMD...: runs CMD under GNU time, records wall seconds, CPU seconds and peak RSS
measure() {
  local name=$1 phase=$2; shift 2
  local log="$WORK/$name.$phase.time"
  "$TIME" -v "$@" > "$WORK/$name.$phase.out" 2> "$log" || { echo "$name $phase failed, see $log" >&2; tail -5 "$log" >&2; }
  local wall rss cpu
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$log")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$log")
  RESULTS+=("$name $phase $wall $cpu $rss")
  printf '%-8s %-10s %8.2f s  %8.2f CPU s  %6s MiB peak RSS\n' "$name" "$phase" "$wall" "$cpu" "$rss"
}

export SEEDSHIP_PASSPHRASE="$PASS" SEEDSHIP_STATE_DIR="$WORK/seedship-state"
mkdir -p "$WORK/seedship-staging"
. "$ROOT/agent/scripts/offline-settings.sh"
offline_publish_settings "$WORK/bench.publishsettings" bench
"$AGENT" -q offline start --staging "$WORK/seedship-staging" --job-name bench --publish-settings "$WORK/bench.publishsettings" \
  --subscription bench --storage-account benchacct --container bench --source "$DATA" > /dev/null
measure seedship initial "$AGENT" -q backup
measure seedship unchanged "$AGENT" -q backup --another-snapshot

if [ "${ONLY:-}" != seedship ] && command -v restic > /dev/null; then
  export RESTIC_PASSWORD="$PASS" RESTIC_REPOSITORY="$WORK/restic"
  restic init --repository-version 2 -q > /dev/null
  measure restic initial restic backup -q --compression auto "$DATA"
  measure restic unchanged restic backup -q --compression auto "$DATA"
elif [ "${ONLY:-}" != seedship ]; then
  echo "restic: not installed (apt-get install restic); left out"
fi
if [ "${ONLY:-}" != seedship ] && command -v rustic > /dev/null; then
  export RUSTIC_PASSWORD="$PASS" RUSTIC_REPOSITORY="$WORK/rustic"
  rustic init > /dev/null 2>&1
  measure rustic initial rustic backup "$DATA"
  measure rustic unchanged rustic backup "$DATA"
elif [ "${ONLY:-}" != seedship ]; then
  echo "rustic: not installed (cargo install --locked rustic-rs); left out"
fi

echo
echo "folders: $dirs ($PER_DIR files per leaf folder)"
echo "| tool | files | initial (s) | initial CPU (s) | initial peak RSS (MiB) | unchanged (s) | unchanged CPU (s) | unchanged peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|"
for tool in seedship restic rustic; do
  line=""
  for phase in initial unchanged; do
    for r in "${RESULTS[@]}"; do
      set -- $r
      [ "$1" = "$tool" ] && [ "$2" = "$phase" ] && line="$line | $3 | $4 | $5"
    done
  done
  if [ -n "$line" ]; then echo "| $tool | $FILES$line |"; fi
done
