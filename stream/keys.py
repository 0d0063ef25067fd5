"""THE Redis key layout of the stream: every key the worker writes and the dashboard reads is named here.

All keys start with "<app>:" (setting `app`, default "mobstream"); city-scoped keys with
"<app>:<city>:". Window state expires (setting `ttl`) and is purged once no window needs it; per-slot
outputs are kept for the last `retain_slots` slots (stream.publication), so memory stays bounded.

  <app>:<city>:cells:<slot>       hash  uid -> "ts_ms|cell"  each user's latest ping in the slot (latest
                                        event time wins); a user's 8-slot window is HGET uid on the
                                        window's 8 slot hashes (absent = not seen: the mask)
  <app>:<city>:act:<slot>:p<part> set   uids partition <part> saw in <slot>: whom it closes, and purges
                                        from cells:<slot> once no window needs the slot (8 slots on)
  <app>:<city>:flowp:<slot>:p<part> string JSON [[cell...], [occ, in, out, ...]]: partition <part>'s
                                        share of a closed slot (deleted once assembled)
  <app>:<city>:pslots             zset  slots having partial flows (score = slot), to assemble
  <app>:<city>:flow:<slot>        hash  cell -> "occ,in,out"  the city's flows of a closed slot: sum of
                                        the partitions' shares; 8 consecutive ones are a cell's window
  <app>:<city>:flowj:<slot>       string JSON [[cell...], [occ, in, out, ...]]: the same flows in one value,
                                        what the forecaster reads (8 GETs, not 8 x 40,000 hash fields)
  <app>:<city>:fc:<slot>          hash  cell -> JSON forecast made at the close of <slot> for <slot>+1
  <app>:<city>:fcn:<slot>         string the same forecasts packed: int32 cells then float32 (n, 3) counts
                                        (the live error reads it back in one value)
  <app>:<city>:emb:<uid>          string JSON embedding of the user's latest window: vector as base64 of
                                        little-endian float32 (`embedding_b64`, `dim`, `dtype`)
  <app>:<city>:err                hash  slot -> JSON live forecast error (model and persistence)
  <app>:<city>:unpub              zset  assembled slots whose outputs are not yet published and flushed
                                        (score = slot): ADVANCE adds, the publisher removes
  <app>:<city>:outs               zset  published slots whose per-slot outputs (flow, flowj, fc, fcn, err
                                        field) are kept; those retain_slots behind the newest are deleted
  <app>:cities                    set   cities seen
  <app>:wm                        hash  partition -> max event time seen (epoch s)
  <app>:closed                    hash  partition -> last slot the partition closed
  <app>:assembled                 string last slot assembled for every city (all partitions closed it)
  <app>:latest                    hash  city -> last assembled slot (the dashboard's "now")
cell = dense id (y-1)*200 + (x-1) (models.grid.cell_id); uid as sent (ints in decimal).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    app: str = "mobstream"

    def city(self, city: str) -> str:
        return f"{self.app}:{city}:"

    def cells(self, city: str, slot: int) -> str:
        return f"{self.app}:{city}:cells:{slot}"

    def active(self, city: str, slot: int, part: int) -> str:
        return f"{self.app}:{city}:act:{slot}:p{part}"

    def partial(self, city: str, slot: int, part: int) -> str:
        return f"{self.app}:{city}:flowp:{slot}:p{part}"

    def partial_slots(self, city: str) -> str:
        return f"{self.app}:{city}:pslots"

    def flow(self, city: str, slot: int) -> str:
        return f"{self.app}:{city}:flow:{slot}"

    def flow_packed(self, city: str, slot: int) -> str:
        return f"{self.app}:{city}:flowj:{slot}"

    def forecast_packed(self, city: str, slot: int) -> str:
        return f"{self.app}:{city}:fcn:{slot}"

    def forecast(self, city: str, slot: int) -> str:
        return f"{self.app}:{city}:fc:{slot}"

    def embedding(self, city: str, uid: str) -> str:
        return f"{self.app}:{city}:emb:{uid}"

    def errors(self, city: str) -> str:
        return f"{self.app}:{city}:err"

    def unpublished(self, city: str) -> str:
        return f"{self.app}:{city}:unpub"

    def kept(self, city: str) -> str:
        return f"{self.app}:{city}:outs"

    @property
    def cities(self) -> str:
        return f"{self.app}:cities"

    @property
    def watermarks(self) -> str:
        return f"{self.app}:wm"

    @property
    def closed(self) -> str:
        return f"{self.app}:closed"

    @property
    def assembled(self) -> str:
        return f"{self.app}:assembled"

    @property
    def latest(self) -> str:
        return f"{self.app}:latest"

    def forecast_ahead(self, city: str, made_at: int, horizon: int) -> str:
        """hash cell -> JSON forecast made at the close of <made_at> for <made_at> + horizon: horizon 1 is
        `forecast` (fc:<slot>), horizon h > 1 the same key with ":h<h>" appended."""
        base = self.forecast(city, made_at)
        return base if horizon == 1 else f"{base}:h{horizon}"
