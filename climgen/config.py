"""Refinement options and their constraints, in one pydantic model.

:class:`SynthesisOptions` is the single source of every option's type, range and combination
rule. :class:`SynthesisConfig` (the library's, the CLI's and the accessor's) and the batch
recipe (:class:`climgen.jobs.RunRecipe`) are built on it, so a constraint is written once and
an error names its field. :class:`SynthesisConfig` raises :class:`~climgen.errors.ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator, model_validator

from climgen._torch import PRECISIONS
from climgen.errors import ConfigError
from climgen.grid import SUPPORTED_FACTORS
from climgen.tiling import TileLayout

MAX_STAGE_INPUT = 600
"""Cells a side of the last stage's input in one model window, at most, when tiles merge by
default: (4 tiles of 32 + 2 halos of 8) x 4 at x8 is 576; at x16 even two tiles a side (640)
would hold about a gigabyte of activations per call, so x16 merges none."""

Bounds = tuple[float | None, float | None]

ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
RESERVED_ATTRIBUTES = frozenset({"Conventions", "history", "date_created", "processing_level"})
"""Global attributes that record what climgen did, which a user's ``attributes`` may not replace."""


def check_attributes(attributes: Mapping) -> dict:
    """Global attributes a user states, checked: netCDF names, text or numbers, none of climgen's
    own (ValueError otherwise)."""
    for key, value in attributes.items():
        if not isinstance(key, str) or not ATTRIBUTE_NAME.fullmatch(key):
            raise ValueError(f"attribute names are letters, digits and underscores, starting with a letter; got {key!r}")
        if key in RESERVED_ATTRIBUTES or key.startswith("climgen_"):
            raise ValueError(f"attribute {key!r} is climgen's to write (it states what the run did)")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"attribute {key!r} must be text or a number, got {value!r}")
    return dict(attributes)


NOT_NUMBERS = (bool, np.bool_, str, bytes)
"""Values pydantic would coerce into numbers, which options refuse (``budget=True`` was 1.0)."""


def _whole_number(value: Any) -> Any:
    """Integers (numpy's too) as int; a bool is no count, a float no integer, text no number."""
    if isinstance(value, (*NOT_NUMBERS, float, np.floating)):
        raise ValueError(f"must be an integer, got {value!r}")
    return int(value) if isinstance(value, np.integer) else value


def _real_number(value: Any) -> Any:
    """Numbers (numpy's too) as float (None stays None); a bool or text is no number."""
    if isinstance(value, NOT_NUMBERS):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value) if isinstance(value, (np.integer, np.floating)) else value


Integer = Annotated[int, BeforeValidator(_whole_number)]
Real = Annotated[float, BeforeValidator(_real_number)]


def parse_limits(name: str, limits: Any) -> Bounds:
    """A variable's (lower, upper) bounds as floats or None, checked: lower below upper."""
    try:
        if isinstance(limits, (str, bytes)) or any(isinstance(v, NOT_NUMBERS) for v in limits):
            raise TypeError
        lower, upper = limits
        lower, upper = (None if v is None else float(v) for v in (lower, upper))
    except (TypeError, ValueError):
        raise ConfigError(f"bounds of {name!r} must be (lower, upper), each a number or None, got {limits!r}") from None
    if any(v is not None and np.isnan(v) for v in (lower, upper)):
        raise ConfigError(f"bounds of {name!r} must be numbers or None (no limit), got {limits!r}")
    lower = None if lower is not None and np.isinf(lower) and lower < 0 else lower  # -inf, +inf: no limit
    upper = None if upper is not None and np.isinf(upper) and upper > 0 else upper
    if lower is not None and upper is not None and not lower < upper:
        raise ConfigError(f"bounds of {name!r}: lower must be below upper, got {lower}, {upper}")
    return lower, upper


RANGES = {
    "seed": (lambda v: v >= 0, lambda v: True, "a non-negative integer"),
    "members": (lambda v: v >= 1, lambda v: v <= 1000, "between 1 and 1000"),
    "budget": (lambda v: v > 0, lambda v: v <= 1, "in (0, 1]"),
    "quality": (lambda v: v > 0, lambda v: v < 1, "in (0, 1), e.g. 0.995"),
    "tolerance": (lambda v: v > 0, lambda v: v < 1, "a share in (0, 1), e.g. 0.015"),
    "tile_size": (lambda v: v >= 4, lambda v: True, ">= 4"),
    "halo": (lambda v: v >= 0, lambda v: True, ">= 0"),
    "merge_tiles": (lambda v: v >= 1, lambda v: True, ">= 1"),
}
"""Each numeric option's lower and upper test and its range in words (for the error)."""


class SynthesisOptions(BaseModel):
    """Every refinement option, its range, and the rules for combining them."""

    model_config = ConfigDict(extra="forbid")

    factor: Integer = 4
    variables: tuple[str, ...] | None = None
    model: str = "default"
    seed: Integer = 0
    members: Integer = 1
    adaptive: bool = True
    budget: Real | None = None
    quality: Real | None = None
    tolerance: Real | None = None  # share of full depth's error skipped stages may remove
    tile_size: Integer | None = None
    halo: Integer | None = None
    merge_tiles: Integer | None = None
    bounds: Mapping[str, Any] | None = None  # variable -> (lower, upper), None for no limit
    order: tuple[tuple[str, ...], ...] | None = None  # chains kept in order, lowest first; None: from metadata
    conservation: Literal["cells", "area"] = "cells"  # block means over cells alike, or weighted by area
    residual_gain: Any = "auto"  # share of the model's learned detail kept, 0..2; "auto": self-tested
    attributes: Mapping[str, Any] | None = None  # global attributes the user states: creator, licence, project...
    precision: Literal[PRECISIONS] = "auto"  # the model's; auto: bf16 where computed natively

    @field_validator("factor")
    @classmethod
    def _factor(cls, factor: int) -> int:
        if factor not in SUPPORTED_FACTORS:
            raise ValueError(f"factor must be one of {', '.join(map(str, SUPPORTED_FACTORS))} (x2 stages), got {factor!r}")
        return factor

    @field_validator("variables")
    @classmethod
    def _some_variables(cls, variables: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if variables is not None and not variables:
            raise ValueError("is empty: name the variables to refine, or leave it out (None) to refine every one")
        return variables

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, value: float | None, info) -> float | None:
        low, high, text = RANGES[info.field_name]
        if value is not None and not (low(value) and high(value)):
            raise ValueError(f"{info.field_name} must be {text}, got {value!r}")
        return value

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, bounds: Mapping | None) -> dict | None:
        if bounds is None:
            return None
        try:
            return {name: parse_limits(name, limits) for name, limits in bounds.items()}
        except ConfigError as error:
            raise ValueError(str(error)) from None

    @field_validator("order", mode="before")
    @classmethod
    def _order(cls, order: Any) -> Any:
        chains = list(order) if order is not None else []
        chained = [name for chain in chains if not isinstance(chain, str) for name in chain]
        if any(isinstance(chain, str) or len(chain) < 2 for chain in chains) or len(set(chained)) < len(chained):
            raise ValueError(f"order takes chains of two or more distinct variables, lowest first, got {order!r}")
        return order

    @field_validator("conservation", mode="before")
    @classmethod
    def _conservation(cls, conservation: Any) -> Any:
        if conservation not in ("cells", "area"):
            raise ValueError(f"conservation must be one of cells, area, got {conservation!r}")
        return conservation

    @field_validator("residual_gain")
    @classmethod
    def _residual_gain(cls, gain: Any) -> float | str:
        if gain == "auto" and isinstance(gain, str):
            return gain
        if isinstance(gain, (bool, str)) or not isinstance(gain, (int, float, np.number)) or not 0 <= gain <= 2:
            raise ValueError(f"residual_gain must be 'auto' or a number in 0..2 (1: the detail as trained), got {gain!r}")
        return float(gain)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, attributes: Mapping | None) -> dict | None:
        return None if attributes is None else check_attributes(attributes)

    @model_validator(mode="after")
    def _combinations(self):
        if self.budget is not None and not self.adaptive:
            raise ValueError("budget applies to adaptive refinement; drop it, or drop uniform depth (--uniform, adaptive=False)")
        if self.quality is not None and (self.budget is not None or not self.adaptive):
            raise ValueError(
                "quality sets the depth itself: use it without budget and without uniform depth (--uniform, adaptive=False)"
            )
        if self.tolerance is not None and (self.budget is not None or self.quality is not None or not self.adaptive):
            raise ValueError(
                "tolerance sets the depth itself: use it without budget, quality and uniform depth (--uniform, adaptive=False)"
            )
        return self

    def synthesis_options(self) -> dict:
        """The options as keyword arguments of :class:`SynthesisConfig`."""
        return {name: getattr(self, name) for name in SynthesisOptions.model_fields}


def error_text(error: ValidationError) -> str:
    """The first error of a validation as one line that names its field."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if not where or message.startswith(where.split(".")[0]) or message.startswith("bounds of"):
        return message
    return f"{where}: {message}"


class SynthesisConfig(SynthesisOptions):
    """Options of one refinement run (saved as provenance in every output); invalid options
    raise :class:`~climgen.errors.ConfigError` naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **options: Any):
        try:
            super().__init__(**options)
        except ValidationError as error:
            raise ConfigError(error_text(error)) from None

    def validate(self) -> SynthesisConfig:  # type: ignore[override]
        """The config itself: construction already validated it (kept for callers of 0.1)."""
        return self

    def as_dict(self) -> dict:
        """Every option, as plain Python values (for provenance and job identities)."""
        return self.model_dump()

    def layout(self, shape: tuple[int, int]) -> TileLayout:
        """Tiles for a coarse domain: ``tile_size`` if given, else the largest of 32, 16, 8
        coarse cells that gives at least three tiles along the shorter side. ``merge_tiles``,
        if not given, is the largest of 4, 2, 1 whose shared window keeps the last stage's
        input within MAX_STAGE_INPUT cells a side (memory per model call). Windows that later
        stages open get half the halo (:class:`climgen.tiling.TileLayout`)."""
        tile = self.tile_size or next((size for size in (32, 16) if min(shape) >= 3 * size), 8)
        halo = self.halo if self.halo is not None else min(8, tile // 2)
        merge = self.merge_tiles or next((m for m in (4, 2) if (m * tile + 2 * halo) * self.factor // 2 <= MAX_STAGE_INPUT), 1)
        # new windows of later stages get half the halo: as many of their (half-size) cells
        return TileLayout(shape, tile, halo, merge, later_halo=halo // 2)
