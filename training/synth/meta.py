"""Settings of a synthetic-city run, its file names, and synth_meta.json: what a run wrote and
whether a city on disk is up to date."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from training.exceptions import TrainingError
from training.synth import agents as A
from training.synth import csvfmt
from training.synth.city import CityShape

GENERATOR_VERSION = "synth-2"  # bump whenever the same settings would give other bytes
BLOCK_USERS = 500  # the unit of seeding and of work; part of the generator version
CITIES = "ABCD"
# Like LYMob-4Cities (100k, 25k, 20k, 6k users): B, C, D are fractions of --users, and smaller towns.
CITY_USER_SHARE = {"A": 1.0, "B": 0.25, "C": 0.20, "D": 0.06}
CITY_SHAPES = {
    "A": CityShape(radius=60.0, n_subcentres=5, poi_scale=60.0),
    "B": CityShape(radius=45.0, n_subcentres=4, poi_scale=45.0),
    "C": CityShape(radius=40.0, n_subcentres=3, poi_scale=40.0),
    "D": CityShape(radius=28.0, n_subcentres=2, poi_scale=30.0),
}
HEADER = "uid,d,t,x,y\n"
META_NAME = "synth_meta.json"


@dataclass(frozen=True)
class SynthSettings:
    """Everything that decides the output bytes, plus how to run (workers, force)."""

    out: Path
    seed: int = 0
    cities: str = "A"
    users: int = 6000
    days: int = 28
    mask_users: float = 0.05
    mask_days: int | None = None  # default: the last 20% of days, as HuMob hides days 60-74 of 75
    gzip: bool = False
    force: bool = False
    workers: int = 2

    def validate(self) -> None:
        bad = [c for c in self.cities if c not in CITIES]
        if not self.cities or bad or len(set(self.cities)) != len(self.cities):
            raise TrainingError(f"setting cities={self.cities!r}: use distinct letters from {CITIES}, e.g. A or ABCD")
        if not 1 <= self.users <= csvfmt.MAX_UID:
            raise TrainingError(f"setting users={self.users}: must be 1..{csvfmt.MAX_UID}")
        if not 1 <= self.days < csvfmt.MAX_SMALL:
            raise TrainingError(f"setting days={self.days}: must be 1..{csvfmt.MAX_SMALL - 1}")
        if not 0.0 <= self.mask_users <= 1.0:
            raise TrainingError(f"setting mask_users={self.mask_users}: a share between 0 and 1")
        if self.mask_days is not None and not 0 <= self.mask_days <= self.days:
            raise TrainingError(f"setting mask_days={self.mask_days}: must be 0..days ({self.days})")
        if self.workers < 1:
            raise TrainingError(f"setting workers={self.workers}: must be at least 1")

    @property
    def masked_days(self) -> int:
        return round(0.2 * self.days) if self.mask_days is None else self.mask_days

    def city_users(self, city: str) -> int:
        return max(1, round(self.users * CITY_USER_SHARE[city]))


def file_names(city: str, gz: bool) -> dict[str, str]:
    return {
        "records": f"city{city}_challengedata.csv" + (".gz" if gz else ""),
        "poi": f"POIdata_city{city}.csv",
        "labels": f"labels_city{city}.csv",
    }


def city_params(st: SynthSettings, city: str) -> dict:
    """The settings that decide a city's bytes (compared to skip an up-to-date city)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": st.seed,
        "users": st.city_users(city),
        "days": st.days,
        "mask_users": st.mask_users,
        "mask_days": st.masked_days,
        "gzip": st.gzip,
    }


def read_meta(out: Path) -> dict:
    p = out / META_NAME
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{p} is not readable JSON ({exc}); remove it or run with --force") from exc


def plan_cities(st: SynthSettings, meta: dict) -> tuple[list[str], list[str]]:
    """(cities to write, cities already up to date); raises rather than overwrite a different dataset."""
    todo, done = [], []
    for city in st.cities:
        entry = meta.get("cities", {}).get(city)
        present = [n for gz in (False, True) for n in file_names(city, gz).values() if (st.out / n).exists()]
        want = set(file_names(city, st.gzip).values())
        if not st.force and entry and entry.get("params") == city_params(st, city) and want <= set(present):
            done.append(city)
        elif present and not st.force:
            raise TrainingError(
                f"{st.out / present[0]} exists but was generated with other settings "
                f"({(entry or {}).get('params', 'unknown')}); use --force to overwrite or another --out"
            )
        else:
            todo.append(city)
    return todo, done


def parameters() -> dict:
    """The planted model's main constants, recorded in synth_meta.json for whoever reads the data."""
    from training.synth import observe, routines

    return {
        "profiles": dict(zip(A.PROFILES, A.PROFILE_SHARES)),
        "commuter_profiles": [A.PROFILES[i] for i in A.COMMUTER_PROFILES],
        "beta_work": A.BETA_WORK,
        "beta_school": A.BETA_SCHOOL,
        "trip_rate_work": dict(zip(A.PROFILES, routines.TRIP_RATE_WORK.tolist())),
        "trip_rate_free": dict(zip(A.PROFILES, routines.TRIP_RATE_FREE.tolist())),
        "favourite_share": routines.FAVOURITE_SHARE,
        "session_stay_slots": observe.SESSION_STAY,
        "city_user_share": CITY_USER_SHARE,
        "city_shapes": {k: asdict(v) for k, v in CITY_SHAPES.items()},
    }
