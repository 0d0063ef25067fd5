"""The synthetic city's map: centres, coast, population density, 85 POI categories per cell, and the
attractiveness fields (work, leisure, school, night work) that the POI counts drive.

Everything is a pure function of a numpy Generator and a `CityShape`; cells are dense ids
`models.grid.cell_id` on the 200 x 200 grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.grid import GRID_SIZE, cell_xy

N_CELLS = GRID_SIZE * GRID_SIZE
N_CATEGORIES = 85

# Category numbers are 1-based (1..85), the row of HuMob's POI_datacategories.csv. The real file names
# its categories but does not group them; the generator plants these groups (first category, last).
CATEGORY_GROUPS = {
    "food": (1, 20),
    "retail": (21, 34),
    "office": (35, 44),
    "industry": (45, 50),
    "education": (51, 58),
    "health": (59, 66),
    "leisure": (67, 76),
    "transport": (77, 81),
    "civic": (82, 85),
}

# How much each group's POIs attract each kind of visit (rows: fields, columns: groups above).
ATTRACT_WEIGHTS = {
    "work": {"office": 3.0, "industry": 2.0, "retail": 1.0, "food": 0.5, "health": 1.0, "education": 0.5, "civic": 0.5, "transport": 0.5},
    "leisure": {"food": 1.0, "retail": 1.0, "leisure": 1.5, "civic": 0.3, "transport": 0.3},
    "school": {"education": 1.0},
    "night": {"health": 2.0, "industry": 2.0, "transport": 1.0, "food": 0.2},
}


@dataclass(frozen=True)
class CityShape:
    """Size parameters of one city; the rest (centre positions, coast) is drawn from the seed."""

    radius: float  # cells; the scale of the built-up area
    n_subcentres: int
    poi_scale: float  # expected POIs in the densest cell


@dataclass(frozen=True)
class City:
    """A drawn city: per-cell population share, POI counts and attractiveness fields."""

    name: str
    population: np.ndarray  # (N_CELLS,) float64, sums to 1; 0 on water
    poi: np.ndarray  # (N_CELLS, N_CATEGORIES) int32 counts
    attract: dict[str, np.ndarray]  # field name -> (N_CELLS,) float64 weights, 0 where nothing attracts
    centres: np.ndarray  # (n, 2) float cell coordinates (x, y); row 0 is the main centre
    water: np.ndarray  # (N_CELLS,) bool

    def cdf(self, field: str) -> np.ndarray:
        """Cumulative distribution over cells of a field ("population" or an attractiveness field)."""
        w = self.population if field == "population" else self.attract[field]
        c = np.cumsum(w)
        return c / c[-1]


def _grid_xy() -> tuple[np.ndarray, np.ndarray]:
    x, y = cell_xy(np.arange(N_CELLS))
    return x.astype(np.float64), y.astype(np.float64)


def _blob(x, y, cx, cy, sigma):
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * sigma**2))


def _segment_distance(x, y, a, b):
    """Distance of every cell to the segment a-b (cells), for rail corridors."""
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / max(ab @ ab, 1e-9), 0.0, 1.0)
    return np.hypot(x - (a[0] + t * ab[0]), y - (a[1] + t * ab[1]))


def _group_of_category() -> np.ndarray:
    g = np.empty(N_CATEGORIES, dtype=object)
    for name, (lo, hi) in CATEGORY_GROUPS.items():
        g[lo - 1 : hi] = name
    return g


def build_city(name: str, shape: CityShape, rng: np.random.Generator) -> City:
    """Draw one city: a dense centre, sub-centres joined by corridors, a coast, POIs and populations."""
    x, y = _grid_xy()
    main = np.array([100.0, 100.0]) + rng.normal(0, 8, 2)
    ang = rng.uniform(0, 2 * np.pi, shape.n_subcentres)
    dist = rng.uniform(0.35, 0.9, shape.n_subcentres) * shape.radius
    subs = main + np.stack([np.cos(ang), np.sin(ang)], 1) * dist[:, None]
    subs = np.clip(subs, 5, GRID_SIZE - 5)
    centres = np.vstack([main, subs])

    # A straight coast on one side: cells beyond it are sea (no people, no POIs), like Tokyo Bay.
    theta = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(theta), np.sin(theta)])
    offset = shape.radius * rng.uniform(0.8, 1.3)
    water = ((x - main[0]) * normal[0] + (y - main[1]) * normal[1]) > offset

    core = 1.0 * _blob(x, y, *main, 0.09 * shape.radius)
    for s, w in zip(subs, rng.uniform(0.25, 0.6, len(subs))):
        core += w * _blob(x, y, *s, rng.uniform(0.04, 0.07) * shape.radius)
    corridor = np.zeros(N_CELLS)
    for s in subs:
        corridor = np.maximum(corridor, np.exp(-_segment_distance(x, y, main, s) ** 2 / (2 * 1.5**2)))
    # Residents live around rather than in the business core: a broad dome, denser along the rails.
    pop = _blob(x, y, *main, 0.55 * shape.radius) * (1.0 - 0.6 * core / core.max())
    for s in subs:
        pop += 0.35 * _blob(x, y, *s, 0.18 * shape.radius)
    pop += 0.25 * corridor + 0.01
    pop *= rng.lognormal(0.0, 0.5, N_CELLS)
    pop[water] = 0.0
    population = pop / pop.sum()

    industry_zone = np.zeros(N_CELLS)
    for _ in range(2):  # industrial estates on the edge of town, often by the water
        c = main + rng.normal(0, 1, 2) / np.sqrt(2) * shape.radius * 0.8
        industry_zone += _blob(x, y, *c, 0.08 * shape.radius)
    parks = np.zeros(N_CELLS)
    for _ in range(6):
        c = main + rng.normal(0, 0.6, 2) * shape.radius
        parks += _blob(x, y, *c, rng.uniform(1.5, 4.0))

    popn = population / population.max()
    group_field = {
        "food": core + 0.4 * popn + 0.3 * corridor,
        "retail": core + 0.5 * popn + 0.4 * corridor,
        "office": core**1.3 + 0.05 * popn + 0.2 * corridor * core.max(),
        "industry": industry_zone + 0.02 * popn,
        "education": 0.1 * core + popn,
        "health": 0.4 * core + 0.6 * popn,
        "leisure": 0.4 * core + 0.3 * popn + parks,
        "transport": corridor + 0.5 * core + 0.05 * popn,
        "civic": 0.3 * core + 0.7 * popn,
    }
    group_share = {"food": 0.22, "retail": 0.2, "office": 0.16, "industry": 0.05, "education": 0.07,
                   "health": 0.08, "leisure": 0.09, "transport": 0.06, "civic": 0.07}
    groups = _group_of_category()
    cell_noise = rng.lognormal(0.0, 0.6, N_CELLS) * ~water
    lam = np.empty((N_CELLS, N_CATEGORIES))
    for name_g, (lo, hi) in CATEGORY_GROUPS.items():
        f = group_field[name_g] / group_field[name_g].max()
        within = rng.dirichlet(np.full(hi - lo + 1, 1.5))  # some categories common, some rare
        lam[:, lo - 1 : hi] = (shape.poi_scale * group_share[name_g] * f * cell_noise)[:, None] * within[None, :]
    poi = rng.poisson(lam).astype(np.int32)

    counts = {g: poi[:, [i for i in range(N_CATEGORIES) if groups[i] == g]].sum(1) for g in CATEGORY_GROUPS}
    attract = {
        field: sum(w * counts[g] for g, w in weights.items()).astype(np.float64)
        for field, weights in ATTRACT_WEIGHTS.items()
    }
    for field, a in attract.items():
        if a.sum() <= 0:  # a tiny city may lack a group entirely; fall back to where people live
            attract[field] = population.copy()
    return City(name=name, population=population, poi=poi, attract=attract, centres=centres, water=water)


def sample_cells(cdf: np.ndarray, rng: np.random.Generator, n: int | tuple) -> np.ndarray:
    """Draw cell ids from a cumulative distribution over cells."""
    return np.searchsorted(cdf, rng.random(n), side="right").clip(0, N_CELLS - 1).astype(np.int32)


def poi_table(city: City) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The POI file's columns (x, y, category 1..85, POI_count), only non-zero counts, sorted by x, y, category."""
    cid, cat = np.nonzero(city.poi)
    px, py = cell_xy(cid)
    order = np.lexsort((cat, py, px))
    return px[order], py[order], cat[order] + 1, city.poi[cid, cat][order]
