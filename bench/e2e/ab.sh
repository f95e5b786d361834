#!/usr/bin/env bash
# Tern against an earlier commit of itself, in one time window: this VM's speed drifts by ±20 %
# within minutes, so runs minutes apart mislead. Builds a worktree of REV (sharing node_modules),
# then alternates Tern-only relay benches, old and new, and prints one line per run.
#
#   bench/e2e/ab.sh REV [ROUNDS]          # e.g. bench/e2e/ab.sh e718540 4
#   AB_PLAIN=500 AB_DKIM=5000 bench/e2e/ab.sh REV
set -euo pipefail
rev=${1:?usage: bench/e2e/ab.sh REV [ROUNDS]}
rounds=${2:-4}
here=$(cd "$(dirname "$0")/../.." && pwd)
old=$(mktemp -d /tmp/tern-ab-XXXXXX)
trap 'git -C "$here" worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git -C "$here" worktree add --detach -f "$old" "$rev" >/dev/null 2>&1
ln -s "$here/node_modules" "$old/node_modules"
run() {
  (cd "$1" && BENCH_MTAS=tern BENCH_MESSAGES=${AB_PLAIN:-500} BENCH_LATENCY_MESSAGES=200 BENCH_DKIM_MESSAGES=${AB_DKIM:-5000} \
    "$here/node_modules/.bin/node" bench/e2e/relay.ts 2>/dev/null) |
    "$here/node_modules/.bin/node" -e '
      const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      const of = (b) => lines.find((l) => l.bench === b)?.msg_per_s ?? "n/a";
      console.log(`${process.argv[1].padEnd(4)} plain ${of("relay")} msg/s, dkim ${of("relay-dkim")} msg/s`);' "$2"
}
for _ in $(seq 1 "$rounds"); do
  run "$old" old
  run "$here" new
done
