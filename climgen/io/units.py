"""Units of the input variables: read, checked, and carried to the output unchanged (except
a fraction's spellings that UDUNITS lacks, such as ERA5's ``(0 - 1)``: written as ``1``).

climgen's refinement is affine-equivariant (it works in locally standardised units), so it
needs no conversion; but a unit string nobody can parse usually means a broken file, and a
missing one means the output cannot say what it holds. Common CF unit strings are accepted at
once; anything else is parsed with cf-xarray's UDUNITS-flavoured pint registry (imported only
then, as it takes a second or two). Unparseable or missing units give a
:class:`UnitsWarning`, never an error: UDUNITS knows a few spellings pint does not.
"""

from __future__ import annotations

from functools import lru_cache

import xarray as xr

from climgen.errors import ClimgenWarning, warn_user

COMMON = frozenset(
    "1 % K degC degree_Celsius degrees_C celsius m km cm mm s m s-1 m/s m2 s-2 Pa hPa kg kg-1 kg/kg g kg-1 "
    "kg m-2 kg m-2 s-1 mm/day mm day-1 mm d-1 mm/h W m-2 J m-2 m-1 s-1 percent fraction degrees degree".split(" ")
) | {"m s-1", "kg kg-1", "kg m-2 s-1", "W m-2", "mm day-1", "mm d-1", "kg m-2", "J m-2", "g kg-1", "m2 s-2"}


CELSIUS_SPELLINGS = frozenset({"degrees_C", "degree_C", "degrees_Celsius", "degree_Celsius", "degrees_celsius", "deg_C"})
"""UDUNITS spellings of degrees Celsius, some of which pint's registry lacks: read as ``degC``."""

PERCENT_UNITS = frozenset({"%", "percent", "1e-2", "0.01"})
RANGE_UNITS = frozenset({"0-1", "(0 - 1)", "0 - 1"})
"""Unit strings that state the range 0..1 themselves (ERA5's): a fraction whatever its name."""
FRACTION_UNITS = frozenset({"1", "fraction"}) | RANGE_UNITS
"""Unit strings of a fraction in 1 (bounds 0..1; :data:`PERCENT_UNITS` 0..100)."""
RATIO_UNITS = frozenset({"dimensionless", "m3 m-3", "m3/m3", "m**3 m**-3", "m^3 m^-3", "m3.m-3"})
"""Units of a ratio of like quantities (soil water in m3 m-3): a fraction's upper bound is 1."""


class UnitsWarning(ClimgenWarning):
    """A variable's units are missing or could not be parsed."""


@lru_cache(maxsize=256)
def parse_problem(units: str) -> str | None:
    """Why ``units`` cannot be parsed (None when it can)."""
    if units in COMMON or units in CELSIUS_SPELLINGS:
        return None
    try:
        from cf_xarray.units import units as registry
    except ImportError:  # pragma: no cover - cf-xarray and pint are dependencies
        return None
    try:
        registry.Unit(units)
    except Exception as err:  # pint raises several error types for bad strings
        try:  # UDUNITS allows a scale factor ("1e-3", CF's canonical salinity; "1e-6 kg m-2"), pint's Unit not
            registry.Quantity(units)
        except Exception:
            return type(err).__name__
    return None


def check_units(ds: xr.Dataset, variables: list[str]) -> dict[str, str | None]:
    """The units of each variable (None when missing), warning about missing or unparseable
    ones, and about a standard name that is not CF's or whose canonical units the units do
    not convert to (the output would fail a CF check)."""
    found = {}
    for name in variables:
        units = ds[name].attrs.get("units")
        found[name] = units
        if units is None or str(units).strip() == "":
            warn_user(f"variable {name!r} has no units; the output will not have any either", UnitsWarning)
        elif problem := parse_problem(str(units)):
            warn_user(f"units {units!r} of {name!r} are not valid UDUNITS/CF units ({problem}); kept as they are", UnitsWarning)
        if message := standard_name_problem(ds[name].attrs.get("standard_name"), units):
            warn_user(f"{name!r}: {message}; kept as it is, but a CF check of the output will fail", UnitsWarning)
    return found


def standard_name_problem(standard_name, units) -> str | None:
    """What is wrong with a variable's ``standard_name`` against CF's table (None: nothing
    found): a name not in the table, or units that do not convert to its canonical units.
    ERA5's placeholder ``unknown`` and names spelled as no CF name is are left to
    :func:`climgen.io.cf.valid_standard_name`; a name with a modifier is only looked up."""
    from climgen.io.cf import valid_standard_name

    if not standard_name or not isinstance(standard_name, str) or not valid_standard_name(standard_name):
        return None
    table = canonical_units()
    name, *modifier = standard_name.split()
    if table is None:
        return None
    if name not in table["canonical_units"]:
        return f"standard_name {name!r} is not in the CF standard name table (version {table['version']})"
    canonical = table["canonical_units"][name]
    if modifier or units is None or not str(units).strip() or canonical == "":
        return None
    if _dimensions_differ(str(units), canonical):
        return f"units {units!r} do not convert to the canonical units {canonical!r} of standard_name {name!r}"
    return None


@lru_cache(maxsize=1)
def canonical_units() -> dict | None:
    """The canonical units of every CF standard name (``climgen/data/cf/standard-name-units.json``,
    made by the script beside it); None when the package lacks the table."""
    import json
    from importlib import resources

    path = resources.files("climgen") / "data" / "cf" / "standard-name-units.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, OSError):  # pragma: no cover - the table ships with climgen
        return None


@lru_cache(maxsize=256)
def _dimensions_differ(units: str, canonical: str) -> bool:
    """Whether ``units`` measure another kind of quantity than ``canonical``; False when
    either cannot be parsed (nothing known, nothing said)."""
    first, second = _quantity(units), _quantity(canonical)
    return first is not None and second is not None and first.dimensionality != second.dimensionality


def same_dimension(first: str, second: str) -> bool:
    """Whether two unit strings measure the same kind of quantity (``hPa`` and ``Pa``); False
    when either cannot be parsed."""
    one, other = _quantity(first), _quantity(second)
    return one is not None and other is not None and one.dimensionality == other.dimensionality


def _quantity(units: str):
    """One of ``units`` as a pint quantity of cf-xarray's registry; None when it cannot be parsed."""
    try:
        from cf_xarray.units import units as registry

        return registry.Quantity(1.0, _pint_spelling(units))
    except Exception:  # pint raises several error types for strings it cannot parse
        return None


def same_units(first: str, second: str) -> bool:
    """Whether two unit strings mean the same units (``K`` and ``kelvin``, ``m s-1`` and
    ``m/s``); strings neither parses are the same only when equal."""
    if _pint_spelling(first) == _pint_spelling(second):
        return True
    one, other = _quantity(first), _quantity(second)
    if one is None or other is None or one.dimensionality != other.dimensionality:
        return False
    try:
        return abs(one.to(other.units).magnitude - 1) < 1e-9
    except Exception:  # pint raises several error types for quantities it cannot convert
        return False


def _pint_spelling(units: str) -> str:
    """``units`` stripped, in a spelling pint's registry reads (``degrees_C`` as ``degC``)."""
    units = units.strip()
    return "degC" if units in CELSIUS_SPELLINGS else units
