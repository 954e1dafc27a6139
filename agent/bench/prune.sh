#!/usr/bin/env bash
# Prune side by side: seedship-agent, restic and (when installed) rustic build the same history of ten
# snapshots of a copy of DATA (about 2% of its files rewritten between snapshots by a reproducible script),
# forget all but the last three, and prune. Prints the prune time, bytes freed and repository size after
# prune (allocated bytes, `du -B1`: holes punched by seedship do not count, as they take no disk space).
#
#   agent/bench/prune.sh [DATA_DIR] [WORK_DIR]      (defaults: /usr, a fresh temporary folder)
#
# HISTORY_ONLY=1 stops after the forgets (building the history takes long and needs no quiet machine);
# REUSE=1 then times the prunes on that WORK_DIR without building it again (once: a prune changes it).
# rustic prunes with --instant-delete: by default it only marks the packs it replaced and deletes them in a
# later run (23 hours on), so its prune would give no space back; seedship and restic give it back at once.
#
# DATA is only read (copied once into WORK/tree); the rewrites happen in the copy. Builds seedship-agent in
# release mode when needed. Needs restic (apt-get install restic) and GNU time; rustic is optional
# (`cargo install --locked rustic-rs`). seedship forgets with `seedship-agent forget --keep-last 3` when the
# agent has it, else by deleting the seven oldest snapshot objects from the staging folder (what forget does).
set -euo pipefail
DATA=${1:-/usr}
WORK=${2:-$(mktemp -d /tmp/seedship-prune-bench.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${SEEDSHIP_AGENT:-$ROOT/target/release/seedship-agent}
PASS="benchmark passphrase, not secret"
TIME=/usr/bin/time
SNAPSHOTS=${SNAPSHOTS:-10}
[ -x "$AGENT" ] || (cd "$ROOT" && cargo build --release -p seedship-agent)
[ -x "$TIME" ] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }
command -v restic > /dev/null || { echo "restic is required: apt-get install restic" >&2; exit 1; }
mkdir -p "$WORK"
TREE="$WORK/tree"
if [ "${REUSE:-0}" != 1 ]; then
rm -rf "$TREE"
mkdir -p "$TREE"
cp -a "$DATA/." "$TREE/" 2>/dev/null || true
echo "data: copy of $DATA in $TREE ($(du -sh "$TREE" | cut -f1), $(find "$TREE" -type f | wc -l) files); cores: $(nproc)"
fi

# rewrite N: about 2% of the regular files get new content, chosen and generated from seed N (reproducible)
rewrite() {
  python3 - "$TREE" "$1" <<'PY'
import hashlib, os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
files = []
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort()
rng = random.Random(seed)
chosen = rng.sample(files, max(1, len(files) // 50))
total = 0
for p in chosen:
    size = os.path.getsize(p)
    # new bytes: the old content with a seed-dependent 64-byte block every 4 KiB (changes every chunk)
    with open(p, "rb") as f:
        data = bytearray(f.read())
    mark = hashlib.blake2b(f"{seed}:{p}".encode()).digest()
    for off in range(0, len(data), 4096):
        data[off:off + 64] = mark[: min(64, len(data) - off)]
    if not data:
        data = bytearray(mark[:16])
    os.chmod(p, 0o644)
    with open(p, "wb") as f:
        f.write(data)
    total += len(data)
print(f"rewrote {len(chosen)} files, {total >> 20} MiB", file=sys.stderr)
PY
}

# timed NAME CMD...: wall seconds of CMD into $LAST, user + sys CPU seconds into $LAST_CPU (output in
# WORK/NAME.out); CPU seconds are steadier than wall time on a machine shared with other work
timed() {
  local name=$1; shift
  "$TIME" -f '%e %U %S' -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || {
    echo "$name failed, see $WORK/$name.err" >&2; tail -5 "$WORK/$name.err" >&2; exit 1; }
  LAST=$(awk '{ print $1 }' "$WORK/$name.time")
  LAST_CPU=$(awk '{ printf "%.2f", $2 + $3 }' "$WORK/$name.time")
}
size() { du -sB1 "$1" | cut -f1; }

export SEEDSHIP_PASSPHRASE="$PASS" SEEDSHIP_STATE_DIR="$WORK/seedship-state"
export RESTIC_PASSWORD="$PASS" RESTIC_REPOSITORY="$WORK/restic"
HAVE_RUSTIC=0
command -v rustic > /dev/null && HAVE_RUSTIC=1
export RUSTIC_PASSWORD="$PASS" RUSTIC_REPOSITORY="$WORK/rustic"
SEED_REPO="$WORK/seedship-staging/bench/blobs"
if [ "${REUSE:-0}" = 1 ]; then
  [ -d "$SEED_REPO" ] || { echo "REUSE=1: no history in $WORK (build it with HISTORY_ONLY=1)" >&2; exit 1; }
  echo "timing the prunes of the history in $WORK (built earlier)"
else
mkdir -p "$WORK/seedship-staging"
. "$ROOT/agent/scripts/offline-settings.sh"
offline_publish_settings "$WORK/bench.publishsettings" bench
"$AGENT" -q offline start --staging "$WORK/seedship-staging" --job-name bench --publish-settings "$WORK/bench.publishsettings" \
  --subscription bench --storage-account benchacct --container bench --source "$TREE" > /dev/null
restic init --repository-version 2 -q > /dev/null
[ $HAVE_RUSTIC = 1 ] && rustic init > /dev/null 2>&1

for i in $(seq 1 "$SNAPSHOTS"); do
  [ "$i" -gt 1 ] && rewrite "$i"
  if [ "$i" = 1 ]; then "$AGENT" -q backup; else "$AGENT" -q backup --another-snapshot; fi
  restic backup -q --compression auto "$TREE" > /dev/null
  [ $HAVE_RUSTIC = 1 ] && rustic backup "$TREE" > /dev/null 2>&1
  echo "snapshot $i of $SNAPSHOTS taken by every tool"
done

if "$AGENT" forget --help > /dev/null 2>&1; then
  "$AGENT" -q forget --keep-last 3 > /dev/null
else
  # the seven oldest snapshot objects, oldest first as `snapshots` lists them
  for id in $("$AGENT" -q snapshots | awk 'NR>1 {print $1}' | head -n $((SNAPSHOTS - 3))); do
    rm "$SEED_REPO"/snapshots/"$id"*
  done
fi
restic forget -q --keep-last 3 > /dev/null
[ $HAVE_RUSTIC = 1 ] && rustic forget --keep-last 3 > /dev/null 2>&1
fi
if [ "${HISTORY_ONLY:-0}" = 1 ]; then
  echo "history built in $WORK: time the prunes with REUSE=1 $0 $DATA $WORK"
  exit 0
fi

# each repository is read once before its prune: every tool starts from a warm page cache, whatever state
# building the history (or restoring a saved copy of it) left the cache in
warm() { find "$1" -type f -exec cat {} + > /dev/null; }
# (with each tool's local cache: seedship's state folder, restic's and rustic's cache folders)
warm "$SEED_REPO"; warm "$SEEDSHIP_STATE_DIR"
warm "$WORK/restic"; [ -d "$HOME/.cache/restic" ] && warm "$HOME/.cache/restic"
if [ $HAVE_RUSTIC = 1 ]; then warm "$WORK/rustic"; [ -d "$HOME/.cache/rustic" ] && warm "$HOME/.cache/rustic"; fi
before_seedship=$(size "$SEED_REPO"); timed seedship-prune "$AGENT" prune; t_seedship=$LAST; c_seedship=$LAST_CPU; after_seedship=$(size "$SEED_REPO")
before_restic=$(size "$WORK/restic"); timed restic-prune restic prune; t_restic=$LAST; c_restic=$LAST_CPU; after_restic=$(size "$WORK/restic")
if [ $HAVE_RUSTIC = 1 ]; then
  before_rustic=$(size "$WORK/rustic"); timed rustic-prune rustic prune --instant-delete; t_rustic=$LAST; c_rustic=$LAST_CPU; after_rustic=$(size "$WORK/rustic")
else
  echo "rustic: not installed (cargo install --locked rustic-rs); left out"
fi
echo
echo "seedship prune said: $(tail -1 "$WORK/seedship-prune.out")"
echo
echo "| tool | prune (s) | prune CPU (s) | repository before (MB) | freed (MB) | repository after prune (MB) |"
echo "|---|---|---|---|---|---|"
tools="seedship restic"; [ $HAVE_RUSTIC = 1 ] && tools="$tools rustic"
best_t="" best_c="" best_s=""
for t in $tools; do
  tv="t_$t" cv="c_$t" bv="before_$t" av="after_$t"
  printf '| %s | %.2f | %.2f | %.1f | %.1f | %.1f |\n' "$t" "${!tv}" "${!cv}" "${!bv}e-6" "$(( ${!bv} - ${!av} ))e-6" "${!av}e-6"
  if [ "$t" != seedship ]; then
    best_t=$(awk -v a="${!tv}" -v b="${best_t:-1e9}" 'BEGIN{print (a<b)?a:b}')
    best_c=$(awk -v a="${!cv}" -v b="${best_c:-1e9}" 'BEGIN{print (a<b)?a:b}')
    best_s=$(awk -v a="${!av}" -v b="${best_s:-1e18}" 'BEGIN{print (a<b)?a:b}')
  fi
done
echo
awk -v bt="$best_t" -v st="$t_seedship" -v bc="$best_c" -v sc="$c_seedship" -v bs="$best_s" -v ss="$after_seedship" 'BEGIN{
  printf "prune time: fastest peer %.2f s / seedship %.2f s = %.2fx (target >= 3x)\n", bt, st, bt/(st>0?st:0.01);
  printf "prune CPU: least of the peers %.2f s / seedship %.2f s = %.2fx\n", bc, sc, bc/(sc>0?sc:0.01);
  printf "repository after prune: seedship %.1f MB / smallest peer %.1f MB = %.3fx (target <= 1.05x)\n", ss/1e6, bs/1e6, ss/bs }'
echo "work folder kept: $WORK (remove it when done)"
