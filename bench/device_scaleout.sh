#!/usr/bin/env bash
# The scale-out figures on a many-core host (the GPU machine kind): ingest with 1..8 workers on one Redis and
# on a 3-master Redis Cluster, batch and single-ping messages, and repartitioning. Prints as it goes.
#   bash bench/device_bundle.sh --stream-only      # here: wheels + binaries into .device/
#   source .device/setup.sh; bash bench/device_scaleout.sh [PINGS] [SINGLE]   # there
set -uo pipefail
pings=${1:-2000000} single=${2:-300000}
py=${PYTHON:-python3}
echo "== batch messages: workers x shards"
$py bench/bench_scaleout.py --workers 1,2,4,8 --shards 1,3 --pings "$pings" --partitions 8
echo "== single-ping messages: workers x shards"
$py bench/bench_scaleout.py --workers 1,4,8 --shards 1 --pings "$single" --partitions 8 --single --days 1
echo "== repartition: unkeyed vs keyed single pings, one worker"
$py bench/bench_repartition.py --pings 100000
