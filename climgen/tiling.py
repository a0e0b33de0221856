"""Halo'd tiles over a coarse domain and the smooth windows that blend them without seams.

The coarse domain is cut into square tiles (the *core*); each is refined with a halo of extra
coarse cells around it so the model sees context. Each refined tile contributes over its core
grown by half the halo, weighted by a window that ramps linearly across the overlap, so two
neighbours' weights sum to one there and tiles of different refinement depth meet smoothly.
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
    """Square tiles of ``tile`` coarse cells with ``halo`` cells of context on each side."""

    shape: tuple[int, int]
    tile: int = 32
    halo: int = 8

    def __post_init__(self):
        if self.tile < 1 or self.halo < 0:
            raise ConfigError(f"tile size must be >= 1 and halo >= 0, got {self.tile} and {self.halo}")
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
