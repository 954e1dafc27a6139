#!/usr/bin/env bash
# A/B of two (or more) seedship-agent builds: initial backups of the same data, alternating, so that both
# see the same machine (noisy VMs: steal time, other work). Prints wall, CPU (user/sys), peak RSS and the
# CPU time the hypervisor stole during each run.
#
#   agent/bench/ab.sh [-r ROUNDS] [-d DATA_DIR] BIN_A BIN_B [BIN...]
#
# Example: keep the current build, change the code, build again, compare:
#   cp target/release/seedship-agent /tmp/agent-before; (edit; cargo build --release -p seedship-agent)
#   agent/bench/ab.sh /tmp/agent-before target/release/seedship-agent
set -euo pipefail
ROUNDS=2 DATA=/usr
while getopts "r:d:" o; do case $o in r) ROUNDS=$OPTARG ;; d) DATA=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n 2,10p "$0" >&2; exit 2; }
WORK=$(mktemp -d /tmp/seedship-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export SEEDSHIP_PASSPHRASE="benchmark passphrase, not secret" SEEDSHIP_STATE_DIR="$WORK/state"
. "$(dirname "$0")/../scripts/offline-settings.sh"
offline_publish_settings "$WORK/bench.publishsettings" bench
steal() { awk '/^cpu / { print $9 }' /proc/stat; }
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    rm -rf "$WORK/staging" "$WORK/state" && mkdir -p "$WORK/staging"
    "$bin" -q offline start --staging "$WORK/staging" --job-name abtest --publish-settings "$WORK/bench.publishsettings" \
      --subscription bench --storage-account benchacct --container abtest --source "$DATA" > /dev/null
    sync
    s0=$(steal)
    line=$(/usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KiB peak RSS" "$bin" -q backup 2>&1 > /dev/null | tail -1)
    printf 'round %s  %-40s %s, %.2f s stolen\n' "$round" "$bin" "$line" "$(awk -v j=$(( $(steal) - s0 )) 'BEGIN { print j / 100 }')"
  done
done
