"""The real training corpus: every variable and time step of ``shared/data``, with fixed holdouts.

climgen trains on the real fields of ``data/corpus`` (ETOPO5 relief, the COADS climatology,
FNOC winds, the Levitus ocean climatology) and ``data/ncl`` (one regional model's orography
and land fraction), beside generated fields. Each field belongs to a *group* (relief, air
temperature, winds...); crops are drawn group by group, so 40 relief tiles do not drown one
pressure field, and sometimes from the field averaged by 2 first, so the model sees each
kind of field at more than one grid spacing.

The validation holdouts are fixed here, in one place, and every benchmark reports on them:

- ETOPO5: the eight tiles of :data:`HELD_OUT_TILES` (mountains, sea floor, ice);
- COADS and Levitus: the half of the globe from 200 E to 20 E (the Americas, the Atlantic
  and the eastern Pacific); training sees 20 E to 200 E;
- FNOC winds: 1991 and 1992; training sees 1982-1990;
- NCL: only the west halves (rlon < 18) of ``orog_mod3`` and ``sftlf_mod3`` are trained on;
  their east halves, the other regional model (HSURF, FR_LAND), ``orog_mod2`` and the CMIP5
  tas, uas and vas are never seen.

Missing cells (land in ocean fields) stay NaN: a crop is kept when most of it has data, and
losses count only the cells that do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from climgen.errors import InputError, InputWarning, warn_user

Split = Literal["train", "validation"]

HELD_OUT_TILES = (
    "relief_lat+30_lon270",  # the Appalachians and the western Atlantic
    "relief_lat+30_lon000",  # the Alps, the Mediterranean, the Sahara
    "relief_lat+30_lon150",  # Kamchatka, the Kuril trench
    "relief_lat+60_lon210",  # Alaska
    "relief_lat+00_lon180",  # central Pacific seamounts
    "relief_lat-30_lon120",  # southern Australia and its shelf
    "relief_lat-60_lon060",  # the Kerguelen plateau, Southern Ocean
    "relief_lat-90_lon300",  # the Antarctic Peninsula and the Weddell Sea
)
"""ETOPO5 tiles (file stems) kept for validation."""

FNOC_FIRST_HELD_OUT_YEAR = 1991


@dataclass(frozen=True)
class FieldSpec:
    """One variable of one file in :data:`CORPUS`, and how it splits."""

    group: str  # the balancing group
    path: str  # under the shared data folder (a glob for the ETOPO5 tiles)
    variable: str
    split: Literal["tiles", "halves", "years", "west", "none"]


CORPUS = (
    FieldSpec("relief", "corpus/etopo5/relief_*.nc", "elevation", "tiles"),
    FieldSpec("air temperature", "corpus/coads_climatology_2deg.nc", "airt", "halves"),
    FieldSpec("sea-level pressure", "corpus/coads_climatology_2deg.nc", "slp", "halves"),
    FieldSpec("humidity", "corpus/coads_climatology_2deg.nc", "speh", "halves"),
    FieldSpec("wind", "corpus/coads_climatology_2deg.nc", "uwnd", "halves"),
    FieldSpec("wind", "corpus/coads_climatology_2deg.nc", "vwnd", "halves"),
    FieldSpec("wind speed", "corpus/coads_climatology_2deg.nc", "wspd", "halves"),
    FieldSpec("wind", "corpus/navy_winds_monthly_2.5deg.nc", "uwnd", "years"),
    FieldSpec("wind", "corpus/navy_winds_monthly_2.5deg.nc", "vwnd", "years"),
    FieldSpec("ocean temperature", "corpus/levitus_climatology_1deg.nc", "temp", "halves"),
    FieldSpec("salinity", "corpus/levitus_climatology_1deg.nc", "salt", "halves"),
    FieldSpec("model orography", "ncl/orog_mod3_rectilinear_grid_2D.nc", "orog", "west"),
    FieldSpec("land fraction", "ncl/sftlf_mod3_rectilinear_grid_2D.nc", "sftlf", "west"),
)
"""Every real field climgen trains on (paths under ``shared/data``)."""

REGIONAL_WEST_EDGE = 18.0
"""The NCL regional fields are trained on west of this rotated longitude only."""


@dataclass
class CorpusField:
    """The 2-D slices (time steps, levels) of one field in one split, float32 with NaN."""

    group: str
    name: str
    slices: np.ndarray  # (n, rows, cols)


@dataclass
class Corpus:
    """The fields of one split, by group."""

    fields: list[CorpusField] = field(default_factory=list)

    @property
    def groups(self) -> dict[str, list[CorpusField]]:
        grouped: dict[str, list[CorpusField]] = {}
        for item in self.fields:
            grouped.setdefault(item.group, []).append(item)
        return grouped

    def describe(self) -> list[str]:
        """One line per field: group, name and the shape of its slices (for checkpoints)."""
        return [f"{item.group}: {item.name} {tuple(item.slices.shape)}" for item in self.fields]


def load_corpus(data_root: str | Path, split: Split = "train", groups: tuple[str, ...] | None = None) -> Corpus:
    """Read the fields of ``split`` from ``data_root`` (the folder holding ``corpus/`` and ``ncl/``).

    ``groups`` keeps only those balancing groups. Raises :class:`InputError` naming the
    missing file when the data are not there.
    """
    import xarray as xr

    root = Path(data_root)
    corpus = Corpus()
    for spec in CORPUS:
        if groups is not None and spec.group not in groups:
            continue
        paths = sorted(root.glob(spec.path)) if "*" in spec.path else [root / spec.path]
        if not paths or not all(path.is_file() for path in paths):
            raise InputError(f"training data not found: {root / spec.path} (see shared/data/corpus/README.md)")
        for path in paths:
            if spec.split == "tiles" and (path.stem in HELD_OUT_TILES) != (split == "validation"):
                continue
            with xr.open_dataset(path) as ds:
                if spec.variable not in ds.data_vars:
                    raise InputError(f"{path} has no variable {spec.variable!r}; it has {sorted(ds.data_vars)}")
                values = _split(ds[spec.variable], spec.split, split)
            name = f"{path.name}:{spec.variable}" + ("" if split == "train" else f" ({_describe_holdout(spec.split)})")
            corpus.fields.append(CorpusField(spec.group, name, values))
    return corpus


def _split(data, how: str, split: Split) -> np.ndarray:
    """The part of ``data`` (dims ..., y, x) that belongs to ``split``, as (n, y, x) float32."""
    if how == "halves":
        columns = data.sizes[data.dims[-1]]
        data = data.isel({data.dims[-1]: slice(0, columns // 2) if split == "train" else slice(columns // 2, None)})
    elif how == "years":
        held_out = data["time"].dt.year >= FNOC_FIRST_HELD_OUT_YEAR
        data = data.isel(time=~held_out if split == "train" else held_out)
    elif how == "west":
        east = data["rlon"] >= REGIONAL_WEST_EDGE  # a column at the edge is held out, never in both
        data = data.isel(rlon=east.values if split == "validation" else ~east.values)
    values = np.asarray(data.values, dtype=np.float32)
    return values.reshape(-1, *values.shape[-2:])


def _describe_holdout(how: str) -> str:
    return {
        "tiles": "held-out tile",
        "halves": "200 E to 20 E",
        "years": f"{FNOC_FIRST_HELD_OUT_YEAR}-1992",
        "west": f"rlon >= {REGIONAL_WEST_EDGE:g}",
        "none": "",
    }[how]


class CorpusSampler:
    """Crops of ``size`` x ``size`` cells from a :class:`Corpus`, balanced over its groups.

    A crop is drawn by picking a group uniformly (``group_weights`` may reweight them), then a
    field in proportion to its slices, then a slice and a place; with ``coarser_share`` the
    slice is first averaged by 2 (where it is still large enough). Crops with less than
    ``min_valid`` of their cells holding data are drawn again. Returns the crop (NaN where
    missing) and its validity mask.
    """

    def __init__(
        self,
        corpus: Corpus,
        size: int,
        coarser_share: float = 0.25,
        min_valid: float = 0.7,
        group_weights: dict[str, float] | None = None,
    ):
        self.size = size
        self.coarser_share = coarser_share
        self.min_valid = min_valid
        usable = {}
        for group, members in corpus.groups.items():
            kept = [item for item in members if min(item.slices.shape[-2:]) >= size]
            if kept:
                usable[group] = kept
        if not usable:
            raise InputError(f"no training field is at least {size} x {size} cells")
        left_out = sorted(set(corpus.groups) - set(usable))
        if left_out:  # a larger crop silently trained on part of the corpus
            warn_user(
                f"crops of {size} cells do not fit the fields of {left_out}: they are left out of training "
                "(a smaller crop_size keeps them)",
                InputWarning,
            )
        self.left_out = left_out
        self.groups = sorted(usable)
        self.fields = usable
        weights = np.array([(group_weights or {}).get(group, 1.0) for group in self.groups], dtype=np.float64)
        self.group_probability = weights / weights.sum()
        self._coarser = {
            id(item): _block_mean(item.slices)
            for members in usable.values()
            for item in members
            if min(item.slices.shape[-2:]) >= 2 * size
        }

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(100):
            group = self.groups[rng.choice(len(self.groups), p=self.group_probability)]
            members = self.fields[group]
            counts = np.array([item.slices.shape[0] for item in members], dtype=np.float64)
            item = members[rng.choice(len(members), p=counts / counts.sum())]
            slices = item.slices
            if id(item) in self._coarser and rng.random() < self.coarser_share:
                slices = self._coarser[id(item)]
            index = rng.integers(slices.shape[0])
            rows, cols = slices.shape[-2:]
            y0 = rng.integers(0, rows - self.size + 1)
            x0 = rng.integers(0, cols - self.size + 1)
            crop = slices[index, y0 : y0 + self.size, x0 : x0 + self.size]
            valid = np.isfinite(crop)
            if valid.mean() >= self.min_valid and np.ptp(crop[valid]) > 0:
                return crop.astype(np.float64), valid.astype(np.float64)
        raise InputError("could not draw a crop with enough valid cells in 100 tries")


def _block_mean(slices: np.ndarray) -> np.ndarray:
    """Each slice averaged over 2 x 2 blocks of valid cells (NaN where a block has none)."""
    n, rows, cols = slices.shape
    blocks = slices[:, : rows // 2 * 2, : cols // 2 * 2].reshape(n, rows // 2, 2, cols // 2, 2)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0).sum(axis=(2, 4))
    count = valid.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


@dataclass
class HeldOutField:
    """A real field no shipped model trained on: its name, group and truth (one variable)."""

    name: str
    group: str
    variable: str
    truth: object  # xr.Dataset: the variable and its coordinates, float64, two time steps at most


HELD_OUT_STEPS = {"coads": (0, 6), "navy": (0, 6), "levitus": (0,), "ncl": (0, 6)}
"""Time steps (or levels) of each held-out field that benchmarks score: January and July of
the held-out part (1991 for FNOC), the surface level of Levitus."""

NCL_HELD_OUT = (
    ("HSURF_regional_model_0.44deg.nc", "HSURF", "surface height, east Africa", "rlon"),
    ("FR-LAND_regional_model_0.44deg.nc", "FR_LAND", "land fraction, east Africa", "rlon"),
    ("orog_mod3_rectilinear_grid_2D.nc", "orog", "orography, east Africa", "rlon"),
    ("sftlf_mod3_rectilinear_grid_2D.nc", "sftlf", "land fraction (%), east Africa", "rlon"),
    ("orog_mod2_rectilinear_grid_2D.nc", "orog", "orography, another model, east Africa", "rlon"),
    ("tas_rectilinear_grid_2D.nc", "tas", "CMIP5 near-surface temperature", None),
    ("uas_rectilinear_grid_2D.nc", "uas", "CMIP5 eastward wind", None),
    ("vas_rectilinear_grid_2D.nc", "vas", "CMIP5 northward wind", None),
)
"""NCL fields kept out of training: the regional fields east of rlon 18 and all of CMIP5's."""


def held_out_fields(data_root: str | Path, relief_tiles: int | None = None) -> list[HeldOutField]:
    """Every held-out real field as a dataset the pipeline can coarsen and refine: the ETOPO5
    tiles of :data:`HELD_OUT_TILES` (the first ``relief_tiles`` of them if given), the
    validation parts of COADS, FNOC and Levitus, and :data:`NCL_HELD_OUT`."""
    import xarray as xr

    root = Path(data_root)
    fields = []

    def add(path: Path, variable: str, name: str, group: str, select) -> None:
        if not path.is_file():
            raise InputError(f"held-out field not found: {path} (see shared/data/corpus/README.md)")
        with xr.open_dataset(path) as ds:
            data = select(ds[[variable]])
            leading = list(data[variable].dims[:-2])
            data = data.isel({dim: 0 for dim in leading[1:]})
            fields.append(HeldOutField(name, group, variable, data.load().astype("float64")))

    for tile in HELD_OUT_TILES[:relief_tiles]:
        add(root / "corpus" / "etopo5" / f"{tile}.nc", "elevation", f"ETOPO5 relief {tile[7:]}", "relief", lambda ds: ds)
    for spec in CORPUS:
        if spec.split not in ("halves", "years"):
            continue
        path = root / spec.path
        source = "COADS" if "coads" in spec.path else "FNOC" if "navy" in spec.path else "Levitus"
        steps = list(HELD_OUT_STEPS[path.name.split("_")[0]])

        def select(ds, spec=spec, steps=steps):
            variable = ds[spec.variable]
            if spec.split == "halves":
                columns = ds.sizes[variable.dims[-1]]
                ds = ds.isel({variable.dims[-1]: slice(columns // 2, None)})
            else:
                ds = ds.isel(time=np.flatnonzero(ds["time"].dt.year >= FNOC_FIRST_HELD_OUT_YEAR))
            return ds.isel({variable.dims[0]: steps})

        add(path, spec.variable, f"{source} {spec.group} ({spec.variable}, {_describe_holdout(spec.split)})", spec.group, select)
    for filename, variable, description, west_axis in NCL_HELD_OUT:

        def select(ds, west_axis=west_axis):
            if west_axis:
                return ds.sel({west_axis: slice(REGIONAL_WEST_EDGE, None)})
            return ds.isel(time=list(HELD_OUT_STEPS["ncl"]))

        add(root / "ncl" / filename, variable, f"NCL {description} ({variable})", "ncl", select)
    return fields
