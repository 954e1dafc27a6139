#!/usr/bin/env bash
# Backs up a folder with seedship-agent into a scratch staging location, restores it, and compares the
# restore with the original: contents with `diff -r`, metadata (type, mode, owner, size, mtime in ns, link
# count, symlink target) with `stat`, and `check --read-data` on the repository.
#
#   agent/scripts/roundtrip-check.sh SOURCE_DIR [WORK_DIR]
#
# Exit 0 when everything matches. Uses SEEDSHIP_AGENT or target/release, target/debug seedship-agent.
set -euo pipefail
SRC=$(realpath "${1:?usage: roundtrip-check.sh SOURCE_DIR [WORK_DIR]}")
WORK=${2:-$(mktemp -d /tmp/seedship-roundtrip.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${SEEDSHIP_AGENT:-}
for c in "$ROOT/target/release/seedship-agent" "$ROOT/target/debug/seedship-agent"; do
  [ -z "$AGENT" ] && [ -x "$c" ] && AGENT=$c
done
[ -n "$AGENT" ] || { echo "build seedship-agent first: cargo build -p seedship-agent" >&2; exit 1; }
export SEEDSHIP_STATE_DIR="$WORK/state" SEEDSHIP_PASSPHRASE=${SEEDSHIP_PASSPHRASE:-"roundtrip check passphrase"}
mkdir -p "$WORK/staging"
. "$ROOT/agent/scripts/offline-settings.sh"
offline_publish_settings "$WORK/rt.publishsettings" roundtrip
"$AGENT" offline start --staging "$WORK/staging" --job-name rt --publish-settings "$WORK/rt.publishsettings" \
  --subscription roundtrip --storage-account rtacct --container rtcheck --source "$SRC"
rc=0; "$AGENT" backup || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 3 ] || { echo "backup failed ($rc)"; exit 1; }
"$AGENT" check --read-data
"$AGENT" restore latest --target "$WORK/restore"
OUT="$WORK/restore${SRC}"
fail=0
# diff cannot compare special files; it reports them even when both sides are the same kind: drop those lines
d=$(diff -r --no-dereference "$SRC" "$OUT" 2>&1 | grep -v -E ' is a (fifo|character special file|block special file|socket) while file .* is a \1$' || true)
[ -z "$d" ] || { echo "$d"; fail=1; }
meta() { (cd "$1" && find . -mindepth 1 -print0 | sort -z | xargs -0 stat -c '%n %F %a %u:%g %U:%G %s %h %.9Y %N') ; }
# %h (link count) and %N (symlink target) included; directory sizes differ between file systems: blank them
norm() { sed -E 's/^(\S+ directory \S+ \S+ \S+) [0-9]+/\1 -/'; }
if ! diff <(meta "$SRC" | norm) <(meta "$OUT" | norm); then fail=1; fi
if [ $fail -eq 0 ]; then echo "round trip OK: $SRC == $OUT"; else echo "round trip FAILED (differences above)"; fi
exit $fail
