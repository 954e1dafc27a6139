#!/usr/bin/env bash
# Times seedship-agent against restic, borg and (when installed) rustic on the same data in one run:
# initial backup, unchanged second run, repository size and peak RSS (/usr/bin/time -v).
#
#   agent/bench/compare.sh [DATA_DIR] [WORK_DIR]      (defaults: /usr, a fresh temporary folder)
#   ONLY=seedship agent/bench/compare.sh /usr          (time seedship alone while iterating; no ratios)
#
# Builds seedship-agent in release mode first (cargo build --release -p seedship-agent). Needs restic, borg
# and GNU time; rustic is optional (`cargo install --locked rustic-rs`). Drops nothing from the page cache:
# every tool sees the same warm cache after a first untimed `tar` read of the data.
set -euo pipefail
DATA=${1:-/usr}
WORK=${2:-$(mktemp -d /tmp/seedship-bench.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${SEEDSHIP_AGENT:-$ROOT/target/release/seedship-agent}
PASS="benchmark passphrase, not secret"
TIME=/usr/bin/time
[ -x "$AGENT" ] || (cd "$ROOT" && cargo build --release -p seedship-agent)
[ -x "$TIME" ] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }
mkdir -p "$WORK"
echo "data: $DATA ($(du -sh "$DATA" 2>/dev/null | cut -f1), $(find "$DATA" -type f 2>/dev/null | wc -l) files); work: $WORK; cores: $(nproc)"
# warm the page cache for everyone (through a pipe: GNU tar skips reading files when it writes to /dev/null)
tar cf - "$DATA" 2>/dev/null | cat > /dev/null || true

RESULTS=()
# measure NAME PHASE CMD...: runs CMD under GNU time, records wall seconds and peak RSS
measure() {
  local name=$1 phase=$2; shift 2
  local log="$WORK/$name.$phase.time"
  "$TIME" -v "$@" > "$WORK/$name.$phase.out" 2> "$log" || { echo "$name $phase failed (exit $?), see $log" >&2; tail -5 "$log" >&2; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$log")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$log")
  RESULTS+=("$name $phase $wall $rss $cpu")
  printf '%-8s %-10s %8.2f s  %8.2f CPU s  %6s MiB peak RSS\n' "$name" "$phase" "$wall" "$cpu" "$rss"
}

# seedship-agent
export SEEDSHIP_PASSPHRASE="$PASS" SEEDSHIP_STATE_DIR="$WORK/seedship-state"
mkdir -p "$WORK/seedship-staging"
. "$ROOT/agent/scripts/offline-settings.sh"
offline_publish_settings "$WORK/bench.publishsettings" bench
"$AGENT" -q offline start --staging "$WORK/seedship-staging" --job-name bench --publish-settings "$WORK/bench.publishsettings" \
  --subscription bench --storage-account benchacct --container bench --source "$DATA" > /dev/null
measure seedship initial "$AGENT" -q backup
measure seedship unchanged "$AGENT" -q backup --another-snapshot
SIZE_seedship=$(du -sb "$WORK/seedship-staging/bench/blobs" | cut -f1)
if [ "${ONLY:-}" = seedship ]; then
  echo "repository: $((SIZE_seedship / 1000000)) MB; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "work folder kept: $WORK (remove it when done)"
  exit 0
fi

# restic
export RESTIC_PASSWORD="$PASS" RESTIC_REPOSITORY="$WORK/restic"
restic init --repository-version 2 -q > /dev/null
measure restic initial restic backup -q --compression auto "$DATA"
measure restic unchanged restic backup -q --compression auto "$DATA"
SIZE_restic=$(du -sb "$WORK/restic" | cut -f1)

# borg
export BORG_PASSPHRASE="$PASS" BORG_REPO="$WORK/borg"
borg init -e repokey-blake2 > /dev/null 2>&1
measure borg initial borg create --compression zstd,3 ::first "$DATA"
measure borg unchanged borg create --compression zstd,3 ::second "$DATA"
SIZE_borg=$(du -sb "$WORK/borg" | cut -f1)

# rustic, when installed
if command -v rustic > /dev/null; then
  export RUSTIC_PASSWORD="$PASS" RUSTIC_REPOSITORY="$WORK/rustic"
  rustic init > /dev/null 2>&1
  measure rustic initial rustic backup "$DATA"
  measure rustic unchanged rustic backup "$DATA"
  SIZE_rustic=$(du -sb "$WORK/rustic" | cut -f1)
else
  echo "rustic: not installed (cargo install --locked rustic-rs, about 10 minutes); left out"
fi

echo
echo "| tool | initial (s) | initial CPU (s) | unchanged (s) | unchanged CPU (s) | repository (MB) | peak RSS initial (MiB) |"
echo "|---|---|---|---|---|---|---|"
for tool in seedship restic borg rustic; do
  init="" unch="" rss="" icpu="" ucpu=""
  for r in "${RESULTS[@]}"; do
    set -- $r
    [ "$1" = "$tool" ] && [ "$2" = initial ] && init=$3 && rss=$4 && icpu=$5
    [ "$1" = "$tool" ] && [ "$2" = unchanged ] && unch=$3 && ucpu=$5
  done
  [ -z "$init" ] && continue
  size_var="SIZE_$tool"
  printf '| %s | %.2f | %.2f | %.2f | %.2f | %d | %s |\n' "$tool" "$init" "$icpu" "$unch" "$ucpu" $(( ${!size_var} / 1000000 )) "$rss"
done
echo
# ratios against the fastest peer
best_init="" best_unch="" best_size=""
for r in "${RESULTS[@]}"; do
  set -- $r
  [ "$1" = seedship ] && continue
  if [ "$2" = initial ]; then best_init=$(awk -v a="$3" -v b="${best_init:-1e9}" 'BEGIN{print (a<b)?a:b}'); fi
  if [ "$2" = unchanged ]; then best_unch=$(awk -v a="$3" -v b="${best_unch:-1e9}" 'BEGIN{print (a<b)?a:b}'); fi
done
for t in restic borg rustic; do v="SIZE_$t"; [ -n "${!v:-}" ] && best_size=$(awk -v a="${!v}" -v b="${best_size:-1e18}" 'BEGIN{print (a<b)?a:b}'); done
for r in "${RESULTS[@]}"; do set -- $r; [ "$1" = seedship ] && [ "$2" = initial ] && s_init=$3; [ "$1" = seedship ] && [ "$2" = unchanged ] && s_unch=$3; done
awk -v bi="$best_init" -v si="$s_init" -v bu="$best_unch" -v su="$s_unch" -v bs="$best_size" -v ss="$SIZE_seedship" 'BEGIN{
  printf "initial backup: fastest peer %.2f s / seedship %.2f s = %.2fx (target >= 2.5x)\n", bi, si, bi/si;
  printf "unchanged run:  fastest peer %.2f s / seedship %.2f s = %.2fx (target >= 4x)\n", bu, su, bu/su;
  printf "repository:     seedship %.0f MB vs smallest peer %.0f MB = %+.1f%% (target <= +10%%)\n", ss/1e6, bs/1e6, (ss/bs-1)*100 }'
echo "(wall times are what the targets are about; CPU seconds (user+sys) help when other work shares the machine)"
echo "work folder kept: $WORK (remove it when done)"
