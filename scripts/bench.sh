#!/usr/bin/env bash
# Starts routerd (release build) on a temporary socket with the shipped config,
# runs `routerctl bench` against it, and stops it.
set -euo pipefail
bin=${1:-.build/release}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin/routerd" --config etc/routerd/routerd.yaml --socket "$dir/routerd.sock" --log-level warning &
pid=$!
for _ in $(seq 100); do [[ -S $dir/routerd.sock ]] && break; sleep 0.05; done
"$bin/routerctl" bench --socket "$dir/routerd.sock" --router random "${@:2}"
