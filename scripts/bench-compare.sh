#!/usr/bin/env bash
# Route throughput of two checkouts' release builds, alternately, each routerd on its own shipped
# config: the `mf` router with cached prompts (1 and 16 connections) and with new prompts (16).
#   scripts/bench-compare.sh OLD_TREE NEW_TREE [ROUNDS]
# Both trees need `swift build -c release` and the model in models/; the client is NEW_TREE's routerctl.
set -euo pipefail
old=${1:?the older checkout} new=${2:?the newer checkout} rounds=${3:-2}
client=$new/.build/release/routerctl
run() {
  local tree=$1 label=$2 dir pid
  dir=$(mktemp -d)
  (cd "$tree" && exec .build/release/routerd --config etc/routerd/routerd.yaml --socket "$dir/s.sock" --log-level warning) &
  pid=$!
  for _ in $(seq 400); do [[ -S $dir/s.sock ]] && break; sleep 0.05; done
  "$client" bench --socket "$dir/s.sock" --router mf --connections 1,16 --requests 40000 --no-baseline | grep '^route ' | sed "s/^/$label cached  /"
  "$client" bench --socket "$dir/s.sock" --router mf --connections 16 --requests 1500 --no-baseline --distinct-prompts | grep '^route ' | sed "s/^/$label new     /"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$dir"
}
for _ in $(seq "$rounds"); do
  run "$old" "$(git -C "$old" rev-parse --short HEAD)"
  run "$new" "$(git -C "$new" rev-parse --short HEAD)"
done
