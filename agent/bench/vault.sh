#!/usr/bin/env bash
# Incrementals into the vault, measured on the real path: a copy of DATA is backed up into staging, put on
# drives with seedship-diskprep, imported by the emulator's data centre into Azurite, completed into the vault
# by the agent; then an unchanged incremental (twice) and a change to about 1% of the bytes. Prints the time of
# each step, the bytes each incremental sent against the bytes changed, and peak RSS.
#
#   agent/bench/vault.sh [DATA] [WORK_DIR]      (defaults: /usr/share, a fresh temporary folder, removed after)
#
# Release binaries (built first). Azurite stores what it is sent at about 50 MiB/s and the drives, the import
# and the vault each hold a copy, so keep DATA within a few GiB and WORK_DIR on a disk with room for 4 copies of
# the compressed data.
set -euo pipefail
DATA=${1:-/usr/share}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/seedship-vault-bench.XXXXXX")}
mkdir -p "$work"
(cd "$root" && cargo build --release --quiet -p seedship-agent -p seedship-diskprep -p seedship-emulator)
export PATH="$root/target/release:$PATH"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ "${KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
. "$root/tests/lib/local-azure.sh"
start_local_azure "$work" > /dev/null

# step NAME CMD...: runs CMD under GNU time; prints wall time, peak RSS and the agent's "sent" line
step() {
  local name=$1; shift
  "$TIME" -v "$@" > "$work/$name.out" 2> "$work/$name.time" || { echo "$name failed, see $work/$name.*" >&2; tail -5 "$work/$name.time" "$work/$name.out" >&2; exit 1; }
  local wall rss sent
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$name.time" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/$name.time")
  sent=$(sed -n 's/^sent \([0-9]*\) bytes to the vault.*/\1/p' "$work/$name.out" | tail -1)
  printf '%-26s %8.2f s  %5s MiB peak RSS%s\n' "$name" "$wall" "$rss" "${sent:+  sent $sent bytes}"
  SENT=${sent:-0}
}

src="$work/src"
cp -a "$DATA" "$src"
bytes=$(find "$src" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
files=$(find "$src" -type f | wc -l)
echo "data: a copy of $DATA, $files files, $((bytes >> 20)) MiB; work: $work; cores: $(nproc)"

export SEEDSHIP_STATE_DIR="$work/state" SEEDSHIP_PASSPHRASE="benchmark passphrase, not secret"
mkdir -p "$work/staging"
seedship-agent -q offline start --staging "$work/staging" --job-name vaultbench --publish-settings "$publish_settings" \
    --subscription "$subscription" --storage-account devstoreaccount1 --container vaultbench --source "$src" > /dev/null
step "initial backup (staging)" seedship-agent -q backup
staged=$(du -sb "$work/staging/vaultbench/blobs" | cut -f1)
size=$(( (staged / 2 + (64 << 20)) >> 20 ))M
step "diskprep, 2 drives" seedship-diskprep -q "s:$work/staging" --drive "$work/d1.img" --drive "$work/d2.img" \
    --create-image "$size" --yes --pbkdf pbkdf2 --location "West US"
ship_job "$work/staging" > /dev/null
step "data-centre import" seedship-emulator receive --dir "$work/emulator" --job vaultbench \
    --drive "$work/d1.img" --drive "$work/d2.img"
rm -f "$work/d1.img" "$work/d2.img"
step "completion + incremental" seedship-agent backup
step "unchanged incremental" seedship-agent backup
step "unchanged incremental" seedship-agent backup

# about 1% of the bytes: whole files rewritten with new random content of the same size, largest first
# among files under 1% each, until 1% is reached
target=$((bytes / 100)); changed=0
while IFS=$'\t' read -r sz f; do
  [ "$changed" -ge "$target" ] && break
  [ "$sz" -gt 0 ] && [ "$sz" -le "$target" ] || continue
  head -c "$sz" /dev/urandom > "$f.new" && mv "$f.new" "$f"
  changed=$((changed + sz))
done < <(find "$src" -type f -printf '%s\t%p\n' | sort -rn)
step "1% changed, incremental" seedship-agent backup
printf 'changed %d bytes (%.2f%% of %d); the incremental sent %d bytes (%.2f%% of the changed bytes, %.2f%% of the data)\n' \
    "$changed" "$(awk -v a="$changed" -v b="$bytes" 'BEGIN {print 100 * a / b}')" "$bytes" "$SENT" \
    "$(awk -v a="$SENT" -v b="$changed" 'BEGIN {print 100 * a / b}')" "$(awk -v a="$SENT" -v b="$bytes" 'BEGIN {print 100 * a / b}')"
step "restore from the vault" seedship-agent -q restore latest --target "$work/restored"
diff -r --no-dereference "$src" "$work/restored$src" > /dev/null && echo "restore from the vault: identical to the source"
