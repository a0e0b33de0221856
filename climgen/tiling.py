"""Halo'd tiles over a coarse domain and the smooth windows that blend them without seams.

The coarse domain is cut into square tiles (the *core*); each is refined with a halo of extra
coarse cells around it so the model sees context. Each refined tile contributes over its core
grown by half the halo, weighted by a window that ramps linearly across the overlap, so two
neighbours' weights sum to one there and tiles of different refinement depth meet smoothly.

Neighbouring tiles share model windows: within each group of ``merge`` x ``merge`` tiles, each
stage refines the tiles that go at least that deep together, in the padded window of their
bounding box, when that is smaller than their separate windows; the next stage starts from
that output. Halos then cost once per group, not once per tile, and a group never costs more
than refining it uniformly. Which windows a tile uses depends only on the depth map, never on
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
class ModelCall:
    """One model call: the coarse window ``box`` (y0, y1, x0, x1) refined through stages
    ``first`` to ``last``, from the coarse field (``first`` 1) or from the output of ``parent``,
    the call that ran stage ``first - 1`` over a window holding this one."""

    box: tuple[int, int, int, int]
    first: int
    last: int
    parent: ModelCall | None = None

    @property
    def window(self) -> tuple[slice, slice]:
        """The window as (row, column) slices of coarse cells."""
        return slice(self.box[0], self.box[1]), slice(self.box[2], self.box[3])

    @property
    def cells(self) -> int:
        """Coarse cells of the window."""
        return (self.box[1] - self.box[0]) * (self.box[3] - self.box[2])

    @property
    def work(self) -> int:
        """Cells the call processes, each stage's counted at its input resolution (stage s
        works on 4**(s - 1) cells per coarse cell)."""
        return self.cells * sum(4 ** (stage - 1) for stage in range(self.first, self.last + 1))


@dataclass(frozen=True)
class TileLayout:
    """Square tiles of ``tile`` coarse cells with ``halo`` cells of context on each side;
    tiles in a group of ``merge`` x ``merge`` share model windows (1: never). A window that a
    later stage opens gets ``later_halo`` cells (default ``halo``; at least ``halo // 2``, the
    margin each tile blends over)."""

    shape: tuple[int, int]
    tile: int = 32
    halo: int = 8
    merge: int = 1
    later_halo: int | None = None
    call_margin: int = 0
    """Cells (at each stage's input resolution) the model computes around every window it is
    given: the reach of its unpadded convolutions. Tiles share a window when that costs less
    than their own windows, margins included."""

    def __post_init__(self):
        if self.tile < 1 or self.halo < 0 or self.merge < 1:
            raise ConfigError(f"tile size and merge must be >= 1 and halo >= 0, got {self.tile}, {self.merge} and {self.halo}")
        if self.later_halo is not None and not self.halo // 2 <= self.later_halo <= self.halo:
            raise ConfigError(f"later_halo must be in {self.halo // 2}..{self.halo} (halo {self.halo}), got {self.later_halo}")
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

    def padded_window(self, rows: range, cols: range, halo: int | None = None) -> tuple[slice, slice]:
        """The padded window (coarse cells) of the tiles in rows ``rows`` and columns ``cols``."""
        ny, nx = self.shape
        halo = self.halo if halo is None else halo
        y0, x0 = rows.start * self.tile, cols.start * self.tile
        y1, x1 = min(ny, rows.stop * self.tile), min(nx, cols.stop * self.tile)
        return self._window(y0, y1, halo, ny), self._window(x0, x1, halo, nx)

    def stage_halo(self, stage: int) -> int:
        """Context cells (coarse) around a window at ``stage``."""
        return self.halo if stage == 1 or self.later_halo is None else self.later_halo

    def stage_window(self, tile: Tile, stage: int) -> tuple[slice, slice]:
        """``tile``'s own model window at ``stage``."""
        return self.padded_window(range(tile.row, tile.row + 1), range(tile.col, tile.col + 1), self.stage_halo(stage))

    def group_ranges(self, tile: Tile) -> tuple[range, range]:
        """Rows and columns of the tile grid in ``tile``'s merge group."""
        rows, cols = self.grid_shape
        row0, col0 = tile.row // self.merge * self.merge, tile.col // self.merge * self.merge
        return range(row0, min(rows, row0 + self.merge)), range(col0, min(cols, col0 + self.merge))

    def group_calls(self, rows: range, cols: range, depth: np.ndarray) -> dict[tuple[int, int], list[ModelCall]]:
        """The model calls of one merge group (tile rows ``rows``, columns ``cols``) and, for
        each tile (row, col), the chain of calls that refines it to its depth.

        At each stage the tiles that go at least that deep share the padded window of their
        bounding box, unless their own windows together are smaller; from then on each keeps
        its own. A stage that keeps the previous stage's window continues the same call; a
        later stage that needs a new window pads it by ``later_halo`` only (its cells are half
        the size or less, so that holds as much context for the network as ``halo`` did).

        The choice between shared and separate windows is made stage by stage, so narrower
        later windows can tip a group into separate windows a stage early and cost more over
        the stages that follow; a group then keeps the full halo for later windows too (the
        cheaper of the two, so ``later_halo`` never adds work).
        """
        chains, separated = self._group_calls(rows, cols, depth, self.later_halo)
        if not separated or self.later_halo is None or self.later_halo == self.halo:
            return chains  # a group that shares its windows throughout costs no more than with the full halo
        wide, _ = self._group_calls(rows, cols, depth, self.halo)
        return chains if _chains_work(chains) <= _chains_work(wide) else wide

    def _group_calls(
        self, rows: range, cols: range, depth: np.ndarray, later_halo: int | None
    ) -> tuple[dict[tuple[int, int], list[ModelCall]], bool]:
        """:meth:`group_calls` with windows that later stages open padded by ``later_halo``,
        and whether the group's tiles went on in separate windows at some stage."""

        def stage_halo(stage: int) -> int:
            return self.halo if stage == 1 or later_halo is None else later_halo

        tiles = [self.tile_at(r, c) for r in rows for c in cols]
        boxes: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {(t.row, t.col): [] for t in tiles}
        separate = False

        def window(stage: int, full: tuple[slice, slice], later: tuple[slice, slice], keys: list) -> tuple[int, int, int, int]:
            # the full halo when every tile had that window one stage up (the call continues)
            full_key = window_key(full)
            return full_key if stage == 1 or all(boxes[k][-1] == full_key for k in keys) else window_key(later)

        for stage in range(1, max(int(depth[t.row, t.col]) for t in tiles) + 1):
            deep = [t for t in tiles if depth[t.row, t.col] >= stage]
            own = {
                (t.row, t.col): window(
                    stage,
                    t.padded,
                    self.padded_window(range(t.row, t.row + 1), range(t.col, t.col + 1), stage_halo(stage)),
                    [(t.row, t.col)],
                )
                for t in deep
            }
            if not separate:
                deep_rows = range(min(t.row for t in deep), max(t.row for t in deep) + 1)
                deep_cols = range(min(t.col for t in deep), max(t.col for t in deep) + 1)
                full, later = (self.padded_window(deep_rows, deep_cols, stage_halo(s)) for s in (1, stage))
                box = window(stage, full, later, list(own))
                separate = _stage_area(box, stage, self.call_margin) > sum(
                    _stage_area(key, stage, self.call_margin) for key in own.values()
                )
            for key, own_window in own.items():
                boxes[key].append(own_window if separate else box)
        # segments of one box per tile; a call runs to the last stage any tile keeps its box
        segments: dict[tuple, list] = {}
        for stages in boxes.values():
            stage, parent = 1, None
            while stage <= len(stages):
                end = stage
                while end < len(stages) and stages[end] == stages[stage - 1]:
                    end += 1
                key = (stages[stage - 1], stage)
                segment = segments.setdefault(key, [parent, end])
                segment[1] = max(segment[1], end)
                parent, stage = key, end + 1
        calls: dict[tuple, ModelCall] = {}
        for key in sorted(segments, key=lambda k: k[1]):  # parents (earlier stages) first
            parent, last = segments[key]
            calls[key] = ModelCall(key[0], key[1], last, None if parent is None else calls[parent])
        chains = {}
        for tile_key, stages in boxes.items():
            chain, stage = [], 1
            while stage <= len(stages):
                chain.append(calls[(stages[stage - 1], stage)])
                stage = chain[-1].last + 1
            chains[tile_key] = chain
        return chains, separate

    def deepen_within_windows(self, depth: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """``depth`` with each tile raised to the last stage of any model call shared by tiles
        on both sides of it (within the tile range whose bounding window the call refines):
        the group refines it that deep anyway, so the model calls, and their cost, stay the
        same, and no tile keeps less than was computed for it. Tiles where ``keep`` is True
        (constant or missing) stay as they are."""
        deepened = np.array(depth, dtype=np.int8, copy=True)
        movable = np.ones(deepened.shape, dtype=bool) if keep is None else ~np.asarray(keep, dtype=bool)
        for rows, cols in self.groups():
            for call, keys in self.call_users(rows, cols, depth).items():
                (row0, col0), (row1, col1) = np.min(keys, axis=0), np.max(keys, axis=0)
                inside = (slice(row0, row1 + 1), slice(col0, col1 + 1))
                deepened[inside] = np.where(movable[inside], np.maximum(deepened[inside], call.last), deepened[inside])
        return deepened

    def call_users(self, rows: range, cols: range, depth: np.ndarray) -> dict[ModelCall, list[tuple[int, int]]]:
        """Each model call of one merge group and the (row, col) keys of the tiles it refines."""
        users: dict[ModelCall, list[tuple[int, int]]] = {}
        for key, chain in self.group_calls(rows, cols, depth).items():
            for call in chain:
                users.setdefault(call, []).append(key)
        return users

    def groups(self) -> Iterator[tuple[range, range]]:
        """Rows and columns of the tile grid of each merge group, in layout order."""
        rows, cols = self.grid_shape
        for row0 in range(0, rows, self.merge):
            for col0 in range(0, cols, self.merge):
                yield range(row0, min(rows, row0 + self.merge)), range(col0, min(cols, col0 + self.merge))

    def model_calls(self, depth: np.ndarray) -> set[ModelCall]:
        """Every model call refining the domain at the given tile depths (each once)."""
        calls = set()
        for rows, cols in self.groups():
            for chain in self.group_calls(rows, cols, depth).values():
                calls.update(chain)
        return calls

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

    def core_areas(self) -> np.ndarray:
        """Coarse cells in each tile's core (edge tiles may be smaller)."""
        return np.array(
            [
                [_stage_area(window_key(self.tile_at(r, c).core), 1, 0) for c in range(self.grid_shape[1])]
                for r in range(self.grid_shape[0])
            ]
        )

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


def _chains_work(chains: dict[tuple[int, int], list[ModelCall]]) -> int:
    """Work of the distinct model calls in a group's chains."""
    return sum(call.work for call in {call for chain in chains.values() for call in chain})


def window_key(window: tuple[slice, slice]) -> tuple[int, int, int, int]:
    """A hashable key for a 2-D window of slices."""
    return window[0].start, window[0].stop, window[1].start, window[1].stop


def _stage_area(key: tuple[int, int, int, int], stage: int, margin: int) -> int:
    """Cells a model call on the window ``key`` computes at ``stage`` (at that stage's input
    resolution), with the ``margin`` its network computes around every window."""
    scale = 2 ** (stage - 1)
    return ((key[1] - key[0]) * scale + 2 * margin) * ((key[3] - key[2]) * scale + 2 * margin)


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
