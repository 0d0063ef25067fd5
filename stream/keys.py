"""THE Redis key layout of the stream: every key the worker writes and the dashboard reads is named here.

Lua scripts get every key they touch through KEYS, built by these methods; no key name is built
anywhere else. Keys carry a Redis Cluster hash tag (`{...}`), so a cluster keeps together what one
script or transaction touches:
  - `{part:<p>}`: what Kafka partition <p>'s owner writes on the hot path (one cluster node per partition);
  - `{city:<c>}`: a city's assembly and outputs (the partitions' shares meet there, once per slot);
  - untagged: per-user embeddings (spread over the cluster) and the few global registries.
Window state expires (setting `ttl`) and is deleted once no window needs it; per-slot outputs are kept for
the last `retain_slots` slots (stream.publication), so memory stays bounded.

Partition-local (hot path: one scripted write per batch):
  <app>:{part:<p>}:clock               hash   wm = max event time seen (epoch s), closed = last slot the
                                              partition closed, gen = writes so far (a worker whose copy
                                              is behind reloads; a stale owner's write is refused)
  <app>:{part:<p>}:<city>:log:<slot>   string frames of the pings the partition accepted for the slot
                                              (stream.windows.wal): the durable copy of the worker's
                                              in-memory tables, deleted 8 slots after the slot closes
City (once per closed slot and partition):
  <app>:{city:<c>}:closed              hash   partition -> last slot it closed for the city
  <app>:{city:<c>}:flowp:<slot>:p<p>   string JSON [[cell...], [occ, in, out, ...]]: a partition's share
  <app>:{city:<c>}:pslots              zset   slots having shares (score = slot), to assemble
  <app>:{city:<c>}:assembled           string last slot assembled (every partition closed it)
  <app>:{city:<c>}:latest              string last slot with flows (the dashboard's "now")
  <app>:{city:<c>}:flow:<slot>         hash   cell -> "occ,in,out": the sum of the shares
  <app>:{city:<c>}:flowj:<slot>        string the same flows in one JSON value [[cell...], [occ, in, out, ...]]
  <app>:{city:<c>}:fc:<slot>           hash   cell -> JSON forecast made at the close of <slot> for <slot>+1;
                                       fc:<slot>:h<h> beside it for <slot>+h (h = 2..FORECAST_HORIZONS)
  <app>:{city:<c>}:fcn:<slot>          string the same forecasts packed ("version H", int32 cells, float32 (n, H, 3))
  <app>:{city:<c>}:err                 hash   slot -> JSON live forecast error
  <app>:{city:<c>}:unpub               zset   assembled slots whose outputs are not yet published
  <app>:{city:<c>}:outs                zset   published slots whose per-slot outputs are kept
Untagged:
  <app>:<city>:emb:<uid>               string JSON embedding of the user's latest window
  <app>:cities                         set    cities seen
  <app>:parts                          set    partitions having state (readers find the clocks through it)
cell = dense id (y-1)*200 + (x-1) (models.grid.cell_id); uid as sent (ints in decimal).
"""

from __future__ import annotations

from dataclasses import dataclass


FORECAST_HORIZONS = 4  # forecasts are kept for horizons 1..this (fc:<slot>, fc:<slot>:h2, ...)


@dataclass(frozen=True)
class Keys:
    app: str = "mobstream"

    # -- partition-local
    def part(self, part: int) -> str:
        return f"{self.app}:{{part:{part}}}:"

    def clock(self, part: int) -> str:
        return f"{self.part(part)}clock"

    def log(self, part: int, city: str, slot: int) -> str:
        return f"{self.part(part)}{city}:log:{slot}"

    # -- city
    def city(self, city: str) -> str:
        return f"{self.app}:{{city:{city}}}:"

    def closed(self, city: str) -> str:
        return f"{self.city(city)}closed"

    def partial(self, city: str, slot: int, part: int) -> str:
        return f"{self.city(city)}flowp:{slot}:p{part}"

    def partial_slots(self, city: str) -> str:
        return f"{self.city(city)}pslots"

    def assembled(self, city: str) -> str:
        return f"{self.city(city)}assembled"

    def latest(self, city: str) -> str:
        return f"{self.city(city)}latest"

    def flow(self, city: str, slot: int) -> str:
        return f"{self.city(city)}flow:{slot}"

    def flow_packed(self, city: str, slot: int) -> str:
        return f"{self.city(city)}flowj:{slot}"

    def forecast(self, city: str, slot: int) -> str:
        return f"{self.city(city)}fc:{slot}"

    def forecast_packed(self, city: str, slot: int) -> str:
        return f"{self.city(city)}fcn:{slot}"

    def errors(self, city: str) -> str:
        return f"{self.city(city)}err"

    def unpublished(self, city: str) -> str:
        return f"{self.city(city)}unpub"

    def kept(self, city: str) -> str:
        return f"{self.city(city)}outs"

    def slot_outputs(self, city: str, slot: int) -> list[str]:
        """The per-slot output keys the retention trim deletes."""
        return [self.flow(city, slot), self.flow_packed(city, slot), self.forecast(city, slot),
                self.forecast_packed(city, slot)] + [self.forecast_ahead(city, slot, h) for h in range(2, FORECAST_HORIZONS + 1)]

    # -- untagged
    def embedding(self, city: str, uid: str) -> str:
        return f"{self.app}:{city}:emb:{uid}"

    @property
    def cities(self) -> str:
        return f"{self.app}:cities"

    @property
    def parts(self) -> str:
        return f"{self.app}:parts"

    def forecast_ahead(self, city: str, made_at: int, horizon: int) -> str:
        """hash cell -> JSON forecast made at the close of <made_at> for <made_at> + horizon: horizon 1 is
        `forecast` (fc:<slot>), horizon h > 1 the same key with ":h<h>" appended."""
        base = self.forecast(city, made_at)
        return base if horizon == 1 else f"{base}:h{horizon}"
