"""Pure figure building: dense grids -> colored images (PNG) and the pydeck map; no Streamlit, no Redis.

The 200x200 grid is drawn as one image, not 40,000 chart marks: a refresh costs a few
milliseconds on the server and the browser draws a single picture.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from models.grid import GridSpec

SCALE = 4  # screen pixels per cell: 800x800 for the 200x200 grid
BACKGROUND = np.array([14, 17, 23], dtype=np.uint8)  # Streamlit's dark page colour: empty cells blend in
GRIDLINE = np.array([40, 46, 58], dtype=np.uint8)
MARK = np.array([0, 229, 255], dtype=np.uint8)


@dataclass(frozen=True)
class Scale:
    """How values map to colours: a colormap name, limits, and whether counts are log-scaled."""

    cmap: str
    vmin: float
    vmax: float
    log: bool


def count_scale(values: np.ndarray, cmap: str = "inferno") -> Scale:
    """Log scale from 0 to the largest count (heavy-tailed counts would otherwise show one bright dot)."""
    finite = values[np.isfinite(values)]
    return Scale(cmap, 0.0, float(max(finite.max(), 1.0)) if finite.size else 1.0, True)


def error_scale(values: np.ndarray) -> Scale:
    """Symmetric diverging scale for forecast - actual."""
    finite = np.abs(values[np.isfinite(values)])
    lim = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    return Scale("RdBu_r", -max(lim, 1.0), max(lim, 1.0), False)


def _lut(cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)  # (256, 3)


def colorize(values: np.ndarray, scale: Scale, blank: np.ndarray | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8; `blank` (H, W bool) and NaN cells get the background colour.

    Row 0 of the input is y = 1 (south); the image is flipped so north is up.
    """
    v = np.asarray(values, dtype=np.float64)
    empty = ~np.isfinite(v) if blank is None else (blank | ~np.isfinite(v))
    v = np.nan_to_num(v)
    if scale.log:
        t = np.log1p(np.clip(v - scale.vmin, 0, None)) / np.log1p(scale.vmax - scale.vmin)
    else:
        t = (v - scale.vmin) / (scale.vmax - scale.vmin)
    idx = np.clip(t * 255, 0, 255).astype(np.uint8)
    rgb = _lut(scale.cmap)[idx]  # (H, W, 3)
    rgb[empty] = BACKGROUND
    return rgb[::-1]


def upscale(rgb: np.ndarray, k: int = SCALE, every: int = 50) -> np.ndarray:
    """Nearest-neighbour upscaling, with faint gridlines every `every` cells (25 km) as a ruler."""
    big = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)  # (H*k, W*k, 3)
    h, w = rgb.shape[:2]
    for i in range(every, max(h, w), every):
        if i < h:
            row = big[(h - i) * k, :, :]
            row[(row == BACKGROUND).all(axis=-1)] = GRIDLINE
        if i < w:
            col = big[:, i * k, :]
            col[(col == BACKGROUND).all(axis=-1)] = GRIDLINE
    return big


def mark_cell(big: np.ndarray, x: int, y: int, size: int, k: int = SCALE) -> np.ndarray:
    """Draw a square outline around cell (x, y) (1-based) on an upscaled image, in place."""
    top, left = (size - y) * k, (x - 1) * k
    pad = 2 * k
    t0, t1 = max(top - pad, 0), min(top + k + pad, big.shape[0] - 1)
    l0, l1 = max(left - pad, 0), min(left + k + pad, big.shape[1] - 1)
    big[t0, l0:l1 + 1] = big[t1, l0:l1 + 1] = MARK
    big[t0:t1 + 1, l0] = big[t0:t1 + 1, l1] = MARK
    return big


def png(rgb: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    """(H, W, 3) uint8 [+ (H, W) alpha] -> PNG bytes (fast compression: size matters less than time)."""
    from PIL import Image

    img = Image.fromarray(rgb if alpha is None else np.dstack([rgb, alpha]))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def legend(scale: Scale, width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar image for the scale (left = vmin, right = vmax)."""
    lut = _lut(scale.cmap)
    bar = lut[np.linspace(0, 255, width).astype(np.int64)]
    return np.repeat(bar[None, :, :], height, axis=0)


def grid_bounds(spec: GridSpec) -> list[list[float]]:
    """[[west, south], [east, north]]: the grid's lon/lat corners, for a deck.gl BitmapLayer."""
    lat0, lon0 = spec.cell_center(0.5, 0.5)
    lat1, lon1 = spec.cell_center(spec.size + 0.5, spec.size + 0.5)
    return [[float(lon0), float(lat0)], [float(lon1), float(lat1)]]


def deck(rgb: np.ndarray, empty: np.ndarray, spec: GridSpec, tooltip: str = ""):
    """A pydeck map of the colored grid over its real place: one BitmapLayer (transparent where empty)
    on a blank style, so it renders with no tile server; a grid outline shows the extent."""
    import pydeck as pdk

    alpha = np.where(empty[::-1], 0, 235).astype(np.uint8)
    url = "data:image/png;base64," + base64.b64encode(png(rgb, alpha)).decode()
    (w, s), (e, n) = grid_bounds(spec)
    image = pdk.Layer("BitmapLayer", image=url, bounds=[w, s, e, n], opacity=1.0)
    outline = pdk.Layer("PathLayer", data=[{"path": [[w, s], [e, s], [e, n], [w, n], [w, s]]}],
                        get_path="path", get_color=[90, 100, 120], width_min_pixels=1)
    view = pdk.ViewState(latitude=(s + n) / 2, longitude=(w + e) / 2, zoom=8.6, pitch=0)
    return pdk.Deck(layers=[outline, image], initial_view_state=view, map_style=None,
                    tooltip={"text": tooltip} if tooltip else False)
