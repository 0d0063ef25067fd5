#!/usr/bin/env bash
# Packs what the GPU machine kind needs to run the slot-close and whole-city benches into .device/
# (git-ignored through .git/info/exclude; it travels with the device tool's `carry`, < 64 MiB):
# cp312 wheels of the stream's packages that machine lacks, the Tansu and redis-server binaries (xz),
# both checkpoints (xz), a 49-slot cut of a flow cache around its busiest slot, and the model bench's inputs.
#
#   bash bench/device_bundle.sh FLOW_CHECKPOINT ENCODER_CHECKPOINT FLOW_CACHE CITY_FILE
#   bash bench/device_bundle.sh --stream-only     # wheels and binaries only: ingest and scale-out benches
#   # there:  source .device/setup.sh; python3 bench/bench_slot_close.py ... (docs/stream.md has the commands)
set -euo pipefail
stream_only=0
if [ "${1:-}" = "--stream-only" ]; then stream_only=1; else flow=$1 enc=$2 cache=$3 city=$4; fi
root=$(git rev-parse --show-toplevel); cd "$root"
py=.venv/bin/python
mkdir -p .git/info .device/whl .device/bin .device/models .device/cache
grep -qx "/.device/" .git/info/exclude 2>/dev/null || echo "/.device/" >> .git/info/exclude
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
for p in aiokafka redis hiredis orjson confluent-kafka async-timeout duckdb faust-streaming mode-streaming \
         aiohttp-cors croniter intervaltree terminaltables venusian colorlog pytz lz4 zstandard cramjam; do
  $py -m pip show "$p" >/dev/null 2>&1 || continue
  v=$($py -m pip show "$p" 2>/dev/null | sed -n 's/^Version: //p')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat \
      -d .device/whl "$p==$v" 2>&1 | grep -v WARNING || true
done
xz -T2 -9 -c "$($py -c 'from stream.services.broker import broker_binary; print(broker_binary())')" > .device/bin/tansu.xz
xz -T2 -9 -c "$($py -c 'from stream.services.redis_server import redis_binary; print(redis_binary())')" > .device/bin/redis-server.xz
if [ "$stream_only" = 0 ]; then
xz -T2 -6 -c "$flow" > .device/models/flow_lstm.pt.xz
xz -T2 -6 -c "$enc" > .device/models/encoder.pt.xz
$py - "$cache" <<'PY'
import shutil, sys
from pathlib import Path
import numpy as np
src, dst = Path(sys.argv[1]), Path(".device/cache")
c = np.load(src / "counts.npy", mmap_mode="r")
t = int(np.argmax(c[8:, :, 0].sum(axis=1))) + 8
np.save(dst / "counts.npy", np.asarray(c[max(0, t - 32) : t + 17]))
for f in ("cells.npy", "meta.json"):
    shutil.copy(src / f, dst / f)
PY
$py bench/bench_models_device.py prepare --cache "$cache" --data "$city" --out .device/inputs.npz
fi
cat > .device/setup.sh <<'SH'
# source .device/setup.sh on the device machine: wheels, binaries and models unpacked into /tmp (kept while warm)
set -e
if [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl
  touch /tmp/site/.done
fi
mkdir -p /tmp/bin /tmp/models
for f in .device/bin/*.xz; do n=/tmp/bin/$(basename $f .xz); [ -f $n ] || xz -dc $f > $n; chmod +x $n; done
shopt -s nullglob
for f in .device/models/*.xz; do n=/tmp/models/$(basename $f .xz); [ -f $n ] || xz -dc $f > $n; done
export PYTHONPATH=/tmp/site:$PWD MOBSTREAM_BROKER_BIN=/tmp/bin/tansu MOBSTREAM_REDIS_BIN=/tmp/bin/redis-server PYTHONUNBUFFERED=1
set +e
SH
du -sh .device
