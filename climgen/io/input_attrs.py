"""Attributes an input carries about its own file and grid, and what an output on another grid
makes of them: the file's id, date and resolution are left out, a grid's description is left
out or restated for the new spacing."""

from __future__ import annotations

import json
import numbers
import re

INPUT_GRID_ATTRS = ("grid_type", "associated_files")
"""Variable attributes of CMIP-style inputs about the coarse grid (Gaussian, its areacella and
gridspec files): untrue of the refined grid."""
GRIB_GRID = re.compile(r"GRIB_(N[xyij]?|[DN][xyij](InMetres)?|numberOf(Data)?Points|\w*Increment\w*|\w*GridPoint\w*)")
"""cfgrib's variable attributes that give the GRIB grid's size, spacing and corners."""
INPUT_FILE_ATTRS = frozenset(
    {
        "tracking_id",
        "creation_date",
        "nominal_resolution",
        "geospatial_lat_resolution",
        "geospatial_lon_resolution",
        "climgen_job",  # a streamed climgen output's job and state: this output is another
        "climgen_complete",
        # ACDD's identity and dates of the file: an output is another dataset
        "id",
        "uuid",
        "date_created",
        "date_modified",
        "date_issued",
        "date_metadata_modified",
    }
)
"""Global attributes that describe the input file alone: an output keeping them would claim to
be that file, or to have its resolution."""
WRF_SPACING = ("DX", "DY")  # grid spacing in metres
WRF_STAGGERED_SIZE = ("WEST-EAST_GRID_DIMENSION", "SOUTH-NORTH_GRID_DIMENSION")  # cells + 1


def coarse_grid_keys(attrs: dict) -> list[str]:
    """A variable's attributes that describe the grid it came on (:data:`INPUT_GRID_ATTRS`,
    :data:`GRIB_GRID`)."""
    return [key for key in attrs if key in INPUT_GRID_ATTRS or GRIB_GRID.fullmatch(key)]


def restate_grid(attrs: dict, spacing_ratio: float, shape: tuple[int, int]) -> dict:
    """Global attributes for the same domain on a grid of ``shape`` (rows, columns) whose spacing
    is ``spacing_ratio`` times the input's (1/4 refined by 4, 4 coarsened by 4): a WRF file's
    ``DX``/``DY`` and staggered grid sizes restated, so tools that rebuild the grid from them
    (salem, wrf-python, xwrf) place it right, and the sizes of its parallel run's patches, which
    no longer hold, left out. Files without WRF's grid sizes are left as they are."""
    if not any(key in attrs for key in WRF_STAGGERED_SIZE):
        return dict(attrs)
    restated = {key: value for key, value in attrs.items() if "_PATCH_" not in key}
    for key in WRF_SPACING:
        if isinstance(restated.get(key), numbers.Real):
            restated[key] = restated[key] * spacing_ratio
    rows, columns = shape
    for key, cells in zip(WRF_STAGGERED_SIZE, (columns, rows), strict=True):
        if key in restated:
            restated[key] = type(restated[key])(cells + 1) if isinstance(restated[key], numbers.Integral) else cells + 1
    return restated


REFINED_TITLE = re.compile(r" \(refined x\d+ by climgen\)$")
"""The end climgen gives the title of what it refines."""


def coarsened_attrs(attrs: dict, factor: int, shape: tuple[int, int]) -> dict:
    """The global attributes of a field block-averaged by ``factor`` onto ``shape`` cells: the
    input's file identity, climgen's record and, for a climgen output, its claims to be a
    refinement (the title's ending, summary and processing level) left out; the grid restated."""
    from climgen import __version__

    refined = "climgen_provenance" in attrs
    kept = {key: value for key, value in attrs.items() if key not in INPUT_FILE_ATTRS and not key.startswith("climgen_")}
    if refined:
        kept = {key: value for key, value in kept.items() if key not in ("summary", "processing_level")}
        if "title" in kept:
            kept["title"] = REFINED_TITLE.sub("", str(kept["title"]))
    kept["climgen_version"] = __version__
    parent = parent_record(attrs)
    if parent:  # what it was made from: a refined output's record and identity stay traceable
        kept["climgen_coarsened_from"] = json.dumps(parent, sort_keys=True)
    return restate_grid(kept, factor, shape)


def parent_record(attrs: dict) -> dict:
    """An input dataset's identity for the record of what is made from it: its ACDD ``id``,
    its ``tracking_id`` (CMIP's) and, for a climgen output, its own record (provenance or what
    it was coarsened from, and the tracking id of its input)."""
    record = {key: attrs[key] for key in ("id", "tracking_id", "climgen_input_tracking_id") if key in attrs}
    for key in ("climgen_provenance", "climgen_coarsened_from"):  # a refined or a coarsened output's
        if key in attrs:
            try:
                record[key] = json.loads(attrs[key])
            except (TypeError, ValueError):  # edited by hand: kept as the text it is
                record[key] = str(attrs[key])
    return record
