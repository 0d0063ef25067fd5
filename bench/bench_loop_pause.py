"""The ingest event loop during slot closes with both models on: inference on the loop (before) vs on the
slot-work topic (after), in one run on one machine.

    .venv/bin/python bench/bench_loop_pause.py [--users 30000] [--slots 4] [--rate 10000] [--embedder PATH]

Pings of `--users` users (each seen in half the slots) are offered to a Processor (real redis-server) at
`--rate` pings/s in messages of 500, on one partition, for `--slots` slots; every slot boundary closes a
slot (embeddings of its ~users/2 users with a full-size 512-d encoder unless --embedder, forecasts of its
cells with a tiny flow LSTM). Both modes run the same code, the `--role all` worker's:
  before  the Processor's hooks run inference on the event loop (what the worker did before the slot-work
          topic: embed, forecast and record encoding block the loop);
  after   the hooks write the windows and send work items (stream.slotwork.WorkSender) to a real broker;
          an infer consumer (aiokafka, as Faust's agent) on the same loop runs them (stream.slotwork.WorkRunner),
          models in a thread.
  ingest  after's ingest side alone (work items sent, nobody runs them): the ingest path's own pauses;
  idle    the timer alone on a loop for --idle s: this (shared) machine's floor.
Printed per mode: the loop's longest pause (a 20 ms timer's oversleep, stream.looplag), pauses > 100 ms,
the ingest lag (how late each message was processed after it was offered) p50/p99/max, the CPU seconds per
ping and per embedding (process time), and until every output was published. Goal: longest pause <= 100 ms.
`--dump-stalls FILE` names what stalled the loop (every thread's stack at each pause over 70 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import machine, services  # noqa: E402
from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S  # noqa: E402

PER_MESSAGE = 500


class ModelsInline(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor for `before`: model calls and record encoding run on the calling (loop) thread."""

    def submit(self, fn, /, *args, **kwargs):
        if getattr(fn, "__name__", "") not in ("_embed", "_compute"):
            return super().submit(fn, *args, **kwargs)
        f = concurrent.futures.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, as a thread's would be
            f.set_exception(exc)
        return f


def messages(users: int, slots: int, seed: int = 0) -> list[tuple[float, bytes]]:
    """(event time, message) in event-time order: each user seen once in half the slots, cells around an anchor."""
    rng = np.random.default_rng(seed)
    home = rng.integers(20, 180, (users, 2))
    rows = []
    for s in range(slots + 1):  # the last slot's pings close the one before
        seen = np.flatnonzero(rng.random(users) < 0.5)
        xy = np.clip(home[seen] + rng.integers(-3, 4, (len(seen), 2)), 1, 200)
        ts = O + s * S + np.sort(rng.uniform(1, S - 1, len(seen)))
        rows += [{"uid": int(u), "ts": float(t), "x": int(x), "y": int(y)} for u, t, (x, y) in zip(seen, ts, xy)]
    return [(rows[i]["ts"], orjson.dumps(rows[i:i + PER_MESSAGE])) for i in range(0, len(rows), PER_MESSAGE)]


async def run_mode(mode: str, a, bootstrap: str, redis_url: str, msgs: list, fpath: Path, epath: Path) -> dict:
    import redis.asyncio as aioredis

    from stream import looplag
    from stream.inference import Inference
    from stream.pings import Limits
    from stream.processor import Processor
    from stream.publication import Ledger, WorkLedger
    from stream import metrics as m
    from stream.records import EMBED, Work, pack_windows
    from stream.services import create_topic
    from stream.settings import Topics, WorkerSettings
    from stream.slotwork import WorkRunner, WorkSender
    from stream.transport import make_producer
    from stream.windows.redis_store import RedisWindowStore

    if mode == "idle":  # the machine's own floor: the same timer on a loop with nothing else to do
        lag, pauses = looplag.LoopLag(), []
        record = lag.record
        lag.record = lambda now, pause: pauses.append(pause) or record(now, pause)
        watcher = asyncio.ensure_future(lag.run())
        await asyncio.sleep(a.idle)
        watcher.cancel()
        return {"mode": mode, "max_pause": max(pauses), "over_100ms": sum(x > 0.1 for x in pauses)}
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ModelsInline(4) if mode == "before" else concurrent.futures.ThreadPoolExecutor(4))
    tag = f"{mode}{os.getpid()}"
    s = WorkerSettings(bootstrap=bootstrap, redis_url=redis_url, app=f"blp{tag}", partitions=1, forecaster=fpath,
                       embedder=epath, torch_threads=1,
                       topics=Topics(forecasts=f"blp-fc-{tag}", embeddings=f"blp-emb-{tag}", work=f"blp-work-{tag}"))
    for t in (s.topics.forecasts, s.topics.embeddings, s.work_topic):
        create_topic(bootstrap, t, 1)
    r = aioredis.Redis.from_url(redis_url, socket_timeout=60)
    inference = Inference(s)
    inference.check()
    inference.attach(r, make_producer(bootstrap))
    looplag.freeze_startup_heap()  # as the worker does once started
    stop = asyncio.Event()
    consumer = None
    if mode == "before":
        async def on_closed(part, city, slot, uids, cells):
            key = s.keys.windows(city, slot, part)
            await r.set(key, pack_windows(uids, cells))
            await inference.embed(Work(EMBED, city, slot, part, key))

        async def on_assembled(made):
            for city, slot in made:
                await inference.forecast(city, slot)
        hooks = dict(on_closed=on_closed, on_assembled=on_assembled, ledger=Ledger(r, s.keys))
    else:
        sender = WorkSender(s, r, make_producer(bootstrap))
        hooks = dict(on_closed=sender.on_closed, on_assembled=sender.on_assembled, full_windows=sender.full_windows,
                     ledger=WorkLedger(r, s.keys))
        if mode == "after":  # "ingest": no inference at all, the ingest side's own pauses
            consumer = asyncio.ensure_future(infer(s, bootstrap, WorkRunner(s, inference, WorkLedger(r, s.keys)), stop))
    p = Processor(RedisWindowStore(r, s.keys, s.ttl), Limits(max_future=0), lateness=0, n_partitions=1, origin=O, **hooks)

    lag = looplag.LoopLag()
    pauses: list[float] = []
    record = lag.record
    lag.record = lambda now, pause: pauses.append(pause) or record(now, pause)
    watcher = asyncio.ensure_future(lag.run())
    dumper = asyncio.ensure_future(dump_stalls(a.dump_stalls, mode)) if a.dump_stalls else None
    late: list[float] = []
    emb0, cpu0, t0 = m.EMBEDDINGS._value.get(), time.process_time(), time.perf_counter()
    interval = PER_MESSAGE / a.rate
    for i, (_, value) in enumerate(msgs):
        due = t0 + i * interval  # offered at a steady rate, as a producer would; late = how long it waited
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        await p.process(0, [(None, value)])
        late.append(time.perf_counter() - due)
    ingest_s = time.perf_counter() - t0
    last = len(msgs) and int((msgs[-1][0] - O) // S) - 1
    while mode != "ingest" and (int(await r.zcard(s.keys.kept("A"))) < last + 1 or await r.zcard(s.keys.unpublished("A"))):
        await asyncio.sleep(0.1)
    while mode != "ingest" and [k async for k in r.scan_iter(match=f"{s.app}:*:win:*")]:
        await asyncio.sleep(0.1)
    total = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stop.set()
    watcher.cancel()
    if dumper is not None:
        dumper.cancel()
    if consumer is not None:
        await consumer
    await inference.close()
    n_emb = int(m.EMBEDDINGS._value.get() - emb0)
    await r.aclose()
    pings = sum(len(orjson.loads(v)) for _, v in msgs)
    return {"mode": mode, "max_pause": max(pauses), "over_100ms": sum(x > 0.1 for x in pauses),
            "lag": np.percentile(late, [50, 99, 100]), "ingest_s": ingest_s, "total_s": total, "cpu": cpu,
            "pings": pings, "embeddings": n_emb}


async def dump_stalls(path: Path, mode: str, after: float = 0.07) -> None:
    """Every thread's stack, written to `path` whenever the loop stalls `after` s: faulthandler's own thread
    dumps them without the GIL, so a pause caused by a thread that holds the GIL (gc, a C call) shows its
    culprit, which a sampler needing the GIL cannot see."""
    import faulthandler

    with open(path, "a") as f:
        f.write(f"== mode {mode}\n")
        f.flush()
        try:
            while True:
                faulthandler.dump_traceback_later(after, file=f)
                await asyncio.sleep(0.005)
        finally:
            faulthandler.cancel_dump_traceback_later()


async def infer(s, bootstrap: str, runner, stop: asyncio.Event) -> None:
    """The infer agent's loop: items in order, committed after they are done."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{s.app}-infer", auto_offset_reset="earliest",
                         enable_auto_commit=False)
    await c.start()
    c.assign([TopicPartition(s.work_topic, 0)])  # one partition, one consumer: no group join to wait for
    try:
        while not stop.is_set():
            for msgs in (await c.getmany(timeout_ms=100)).values():
                for msg in msgs:
                    await runner.run(msg.value)
                await c.commit()
    finally:
        await c.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=30_000)
    ap.add_argument("--slots", type=int, default=4, help="slots of pings (each boundary closes one)")
    ap.add_argument("--rate", type=float, default=10_000, help="pings/s offered")
    ap.add_argument("--embedder", type=Path, default=None, help="default: a random full-size (512-d) encoder")
    ap.add_argument("--modes", default="idle,before,after")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of the idle mode (the machine's floor)")
    ap.add_argument("--dump-stalls", type=Path, default=None,
                    help="append every thread's stack to this file whenever the loop stalls 70 ms")
    a = ap.parse_args()
    import torch

    from models.encoder import EncoderConfig
    from tests.stream.tiny_models import encoder_checkpoint, flow_checkpoint

    torch.set_num_threads(1)  # the worker's --torch-threads 1 on a host it shares
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-pause-"))
    fpath, epath = tmp / "flow.pt", a.embedder or tmp / "enc.pt"
    flow_checkpoint(fpath)
    if a.embedder is None:
        encoder_checkpoint(epath, config=EncoderConfig())
    msgs = messages(a.users, a.slots)
    svc, bootstrap, redis_url = services(tmp / "svc")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{a.users:,d} users, {a.slots} slots, {len(msgs):,d} messages offered at {a.rate:,.0f} pings/s; "
          f"embedder {epath}, forecaster {fpath}")
    try:
        for mode in a.modes.split(","):
            got = asyncio.run(run_mode(mode, a, bootstrap, redis_url, msgs, fpath, epath))
            if mode == "idle":
                print(f"idle   longest loop pause {1e3 * got['max_pause']:,.0f} ms ({got['over_100ms']} pauses > 100 ms) "
                      f"in {a.idle:.0f} s: the machine's floor, nothing else on the loop")
                continue
            p50, p99, worst = got["lag"]
            print(f"{mode:6s} longest loop pause {1e3 * got['max_pause']:,.0f} ms ({got['over_100ms']} pauses > 100 ms) | "
                  f"ingest lag p50 {1e3 * p50:,.0f} ms p99 {1e3 * p99:,.0f} ms max {1e3 * worst:,.0f} ms | "
                  f"ingest done {got['ingest_s']:.1f} s, outputs done {got['total_s']:.1f} s | "
                  f"CPU {got['cpu']:.1f} s = {1e6 * got['cpu'] / got['pings']:.0f} us/ping "
                  f"({1e3 * got['cpu'] / max(got['embeddings'], 1):.2f} ms per embedding made, {got['embeddings']:,d} made)")
    finally:
        if svc is not None:
            svc.stop()


if __name__ == "__main__":
    main()
