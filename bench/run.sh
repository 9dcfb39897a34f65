#!/usr/bin/env bash
# One command for the whole benchmark: Conveyor (SQLite + disk, PostgreSQL + s3rver) against nginx, with wrk
# and curl, each server given the same number of processes (1 by default; --processes 2 for 2 and 2,
# --processes 1,2 for both pairings). Options are passed on to bench/delivery.ts (see --help); results
# land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx wrk curl dd; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: $tool is not installed (Debian: apt-get install -y nginx wrk curl)" >&2
    exit 1
  fi
done
node=node_modules/.bin/node
if [ ! -x "$node" ]; then
  echo "bench: $node missing; run npm install first" >&2
  exit 1
fi
exec "$node" bench/delivery.ts "$@"
