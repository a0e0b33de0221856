"""Halo'd tiles over a coarse domain and the smooth windows that blend them without seams.

The coarse domain is cut into square tiles (the *core*); each is refined with a halo of extra
coarse cells around it so the model sees context. Each refined tile contributes over its core
grown by half the halo, weighted by a window that ramps linearly across the overlap, so two
neighbours' weights sum to one there and tiles of different refinement depth meet smoothly.

Neighbouring tiles that get the same depth share one model window: within each group of
``merge`` x ``merge`` tiles, the tiles of one depth are refined together in the padded window
of their bounding box when that is smaller than their separate windows. Halos then cost once
per group, not once per tile. Which window a tile uses depends only on the depth map, never on
how the domain is split into tasks, so results stay the same for any chunking.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from climgen.errors import ConfigError


@dataclass(frozen=True)
class Tile:
    """One tile: its index in the tile grid and its core and padded windows (coarse cells)."""

    row: int
    col: int
    core: tuple[slice, slice]
    padded: tuple[slice, slice]
    blend: tuple[slice, slice]


@dataclass(frozen=True)
class TileLayout:
    """Square tiles of ``tile`` coarse cells with ``halo`` cells of context on each side;
    tiles of one depth in a group of ``merge`` x ``merge`` share a model window (1: never)."""

    shape: tuple[int, int]
    tile: int = 32
    halo: int = 8
    merge: int = 1

    def __post_init__(self):
        if self.tile < 1 or self.halo < 0 or self.merge < 1:
            raise ConfigError(f"tile size and merge must be >= 1 and halo >= 0, got {self.tile}, {self.merge} and {self.halo}")
        if min(self.shape) < 1:
            raise ConfigError(f"empty domain {self.shape}")

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Number of tiles along y and x (edge tiles may be smaller than ``tile``)."""
        return (-(-self.shape[0] // self.tile), -(-self.shape[1] // self.tile))

    def _window(self, start: int, stop: int, grow: int, size: int) -> slice:
        return slice(max(0, start - grow), min(size, stop + grow))

    def tile_at(self, row: int, col: int) -> Tile:
        """The tile in row ``row`` and column ``col`` of the tile grid."""
        ny, nx = self.shape
        blend = self.halo // 2
        y0, x0 = row * self.tile, col * self.tile
        y1, x1 = min(ny, y0 + self.tile), min(nx, x0 + self.tile)
        return Tile(
            row,
            col,
            core=(slice(y0, y1), slice(x0, x1)),
            padded=(self._window(y0, y1, self.halo, ny), self._window(x0, x1, self.halo, nx)),
            blend=(self._window(y0, y1, blend, ny), self._window(x0, x1, blend, nx)),
        )

    def padded_window(self, rows: range, cols: range) -> tuple[slice, slice]:
        """The padded window (coarse cells) of the tiles in rows ``rows`` and columns ``cols``."""
        ny, nx = self.shape
        y0, x0 = rows.start * self.tile, cols.start * self.tile
        y1, x1 = min(ny, rows.stop * self.tile), min(nx, cols.stop * self.tile)
        return self._window(y0, y1, self.halo, ny), self._window(x0, x1, self.halo, nx)

    def group_ranges(self, tile: Tile) -> tuple[range, range]:
        """Rows and columns of the tile grid in ``tile``'s merge group."""
        rows, cols = self.grid_shape
        row0, col0 = tile.row // self.merge * self.merge, tile.col // self.merge * self.merge
        return range(row0, min(rows, row0 + self.merge)), range(col0, min(cols, col0 + self.merge))

    def model_window(self, tile: Tile, depth: np.ndarray) -> tuple[slice, slice]:
        """The padded window ``tile`` is refined in, given the depth of every tile: its own, or
        the window of the bounding box of the tiles of its group at its depth when that window
        is smaller than theirs together."""
        rows, cols = self.group_ranges(tile)
        level = depth[tile.row, tile.col]
        same = [(r, c) for r in rows for c in cols if depth[r, c] == level]
        if len(same) < 2:
            return tile.padded
        box = self.padded_window(
            range(min(r for r, _ in same), max(r for r, _ in same) + 1),
            range(min(c for _, c in same), max(c for _, c in same) + 1),
        )
        separate = sum(_area(self.tile_at(r, c).padded) for r, c in same)
        return box if _area(box) < separate else tile.padded

    def model_windows(self, depth: np.ndarray) -> list[tuple[tuple[slice, slice], int]]:
        """Every model window of the domain with its depth, once (what refining it processes)."""
        windows = {}
        for tile in self:
            window = self.model_window(tile, depth)
            level = int(depth[tile.row, tile.col])
            windows.setdefault((level, *window_key(window)), (window, level))
        return list(windows.values())

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.grid_shape[0]):
            for col in range(self.grid_shape[1]):
                yield self.tile_at(row, col)

    def tiles_reaching(self, region: tuple[slice, slice], grow: int) -> list[Tile]:
        """Tiles whose core grown by ``grow`` cells overlaps ``region``, in layout order,
        found from the tile grid directly (no scan of the whole layout)."""
        ranges = []
        for part, count in zip(region, self.grid_shape, strict=True):
            first = max(0, (part.start - grow) // self.tile)
            last = min(count, -(-(part.stop + grow) // self.tile))
            ranges.append(range(first, last))
        candidates = (self.tile_at(row, col) for row in ranges[0] for col in ranges[1])
        window = "core" if grow == 0 else "blend"
        return [
            t
            for t in candidates
            if all(a.start < b.stop and b.start < a.stop for a, b in zip(getattr(t, window), region, strict=True))
        ]

    def padded_areas(self) -> np.ndarray:
        """Coarse cells in each tile's padded window (what refining the tile processes)."""
        areas = np.zeros(self.grid_shape)
        for tile in self:
            areas[tile.row, tile.col] = (tile.padded[0].stop - tile.padded[0].start) * (
                tile.padded[1].stop - tile.padded[1].start
            )
        return areas

    def tile_map(self, values: np.ndarray) -> np.ndarray:
        """Expand one value per tile (tile-grid shaped) to the coarse domain."""
        expanded = np.repeat(np.repeat(values, self.tile, axis=0), self.tile, axis=1)
        return expanded[: self.shape[0], : self.shape[1]]


def window_key(window: tuple[slice, slice]) -> tuple[int, int, int, int]:
    """A hashable key for a 2-D window of slices."""
    return window[0].start, window[0].stop, window[1].start, window[1].stop


def _area(window: tuple[slice, slice]) -> int:
    return (window[0].stop - window[0].start) * (window[1].stop - window[1].start)


def ramp(length: int, ramp_length: int) -> np.ndarray:
    """1-D weights rising linearly over ``ramp_length`` cells at both ends (never zero)."""
    position = np.arange(length) + 0.5
    if ramp_length <= 0:
        return np.ones(length)
    return np.clip(np.minimum(position, length - position) / ramp_length, 1e-3, 1.0)


def blend_weights(tile: Tile, layout: TileLayout, factor: int) -> np.ndarray:
    """Blending window for a tile on the fine grid, over its blend window.

    The ramp spans the overlap with each neighbour (the halo on the fine grid), so the weights
    of two neighbours add up to one across their overlap.
    """
    overlap = 2 * (layout.halo // 2) * factor
    heights = (tile.blend[0].stop - tile.blend[0].start) * factor
    widths = (tile.blend[1].stop - tile.blend[1].start) * factor
    return _window(heights, widths, overlap)


@functools.lru_cache(maxsize=32)
def _window(heights: int, widths: int, overlap: int) -> np.ndarray:
    # most tiles share a shape: one read-only window per shape
    window = np.outer(ramp(heights, overlap), ramp(widths, overlap))
    window.flags.writeable = False
    return window


def fine_slices(window: tuple[slice, slice], factor: int) -> tuple[slice, slice]:
    """The fine-grid cells covered by a coarse window."""
    return tuple(slice(part.start * factor, part.stop * factor) for part in window)
