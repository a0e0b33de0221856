"""What a variable's CF metadata says about its physics: limits its values keep (quantities
that cannot be negative, fractions in 0..1 or 0..100 %) and variables that come in order
(minimum <= mean <= maximum). The refinement keeps both (:mod:`climgen.conservation`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.conservation import Bounds
from climgen.io.cf import valid_standard_name
from climgen.io.units import FRACTION_UNITS, PERCENT_UNITS, RANGE_UNITS, RATIO_UNITS

# Physical limits kept by the final projection (climgen.conservation): quantities that cannot
# be negative, and fractions (0..1, or 0..100 in percent), by CF standard name
NON_NEGATIVE = frozenset(
    """precipitation_flux precipitation_amount lwe_precipitation_rate lwe_thickness_of_precipitation_amount
    convective_precipitation_flux convective_precipitation_amount stratiform_precipitation_flux
    stratiform_precipitation_amount rainfall_flux rainfall_amount rainfall_rate snowfall_flux snowfall_amount
    lwe_snowfall_rate lwe_thickness_of_snowfall_amount specific_humidity humidity_mixing_ratio wind_speed
    wind_speed_of_gust surface_snow_amount surface_snow_thickness lwe_thickness_of_surface_snow_amount
    atmosphere_mass_content_of_water_vapor toa_incoming_shortwave_flux mass_content_of_water_in_soil
    mass_content_of_water_in_soil_layer sea_ice_thickness leaf_area_index air_pressure_at_mean_sea_level
    surface_air_pressure air_pressure surface_net_downward_shortwave_flux
    integral_wrt_time_of_surface_net_downward_shortwave_flux integral_wrt_time_of_toa_incoming_shortwave_flux
    atmosphere_boundary_layer_thickness atmosphere_convective_available_potential_energy runoff_flux runoff_amount
    surface_runoff_flux surface_runoff_amount graupel_amount""".split()
)
"""Non-negative quantities by CF standard name."""
NON_NEGATIVE_PREFIXES = (
    "mass_fraction_of_",
    "mole_fraction_of_",
    "volume_fraction_of_",
    "mass_concentration_of_",
    "mole_concentration_of_",
    "number_concentration_of_",
    "atmosphere_mass_content_of_",
    "lwe_thickness_of_",
)
"""Families of standard names that are non-negative whatever follows (amounts and
concentrations of a constituent: hundreds of names, one rule)."""
NET_WORDS = ("evaporation", "sublimation", "condensation", "_net_", "net_")
"""Words of a net quantity, negative where it runs the other way (dew and frost make
``lwe_thickness_of_water_evaporation_amount`` negative): never bounded by a rule."""
ONE_WAY = ("_downwelling_", "_upwelling_", "_incoming_", "_outgoing_")
"""Words of a radiative flux in one direction only (never net): non-negative."""
UPWARD = ("_upwelling_", "_outgoing_")
"""Of those, the words of a flux that goes up: stored negative under ``positive: "down"``
(ECMWF's sign convention for outgoing radiation)."""
PRECIPITATION_WORDS = ("precipitation", "rainfall", "snowfall", "graupel", "hail")
"""Words of falling water: a flux, amount or rate of it is non-negative (``solid_precipitation_flux``,
``convective_rainfall_flux``, ``thickness_of_rainfall_amount``...), unless net or a tendency."""
FRACTIONS = frozenset(
    """land_area_fraction sea_area_fraction sea_ice_area_fraction cloud_area_fraction relative_humidity
    cloud_area_fraction_in_atmosphere_layer area_fraction surface_snow_area_fraction land_ice_area_fraction
    lake_area_fraction vegetation_area_fraction volume_fraction_of_condensed_water_in_soil""".split()
)


def non_negative(standard_name: str | None) -> bool:
    """Whether a standard name's quantity cannot be negative: listed (:data:`NON_NEGATIVE`),
    of a constituent's family (:data:`NON_NEGATIVE_PREFIXES`), or a one-way radiative flux
    (:data:`ONE_WAY`, or its time integral); never an unlisted tendency, change or net
    quantity (:data:`NET_WORDS`)."""
    if not standard_name:
        return False
    if standard_name in NON_NEGATIVE:
        return True
    if standard_name.startswith(("tendency_of_", "change_")) or any(word in standard_name for word in NET_WORDS):
        return False
    if any(word in standard_name for word in PRECIPITATION_WORDS) or is_fraction(standard_name):
        return True
    if standard_name.endswith("_speed") or standard_name.startswith("speed_of_"):  # a magnitude
        return True
    flux = standard_name.removeprefix("integral_wrt_time_of_")
    return standard_name.startswith(NON_NEGATIVE_PREFIXES) or (any(way in f"_{flux}" for way in ONE_WAY) and "_flux" in flux)


def is_fraction(standard_name: str | None) -> bool:
    """Whether a standard name is a fraction of a whole (0..1, or 0..100 %): listed
    (:data:`FRACTIONS`), any area fraction (``low_type_cloud_area_fraction``...) or an albedo."""
    if not standard_name:
        return False
    return standard_name in FRACTIONS or "area_fraction" in standard_name or standard_name.endswith("albedo")


# CMIP, ERA5, MERRA-2, IMERG and gridded-observation short names, for files without a standard_name
SHORT_NAMES = {
    "pr": "precipitation_flux",
    "prc": "convective_precipitation_flux",
    "prsn": "snowfall_flux",
    "tp": "lwe_thickness_of_precipitation_amount",
    "huss": "specific_humidity",
    "hurs": "relative_humidity",
    "sfcWind": "wind_speed",
    "clt": "cloud_area_fraction",
    "sftlf": "land_area_fraction",
    "sic": "sea_ice_area_fraction",
    "siconc": "sea_ice_area_fraction",
    "siconca": "sea_ice_area_fraction",
    "snc": "surface_snow_area_fraction",
    "snw": "surface_snow_amount",
    "snd": "surface_snow_thickness",
    "rsds": "surface_downwelling_shortwave_flux_in_air",
    "prw": "atmosphere_mass_content_of_water_vapor",
    "mrso": "mass_content_of_water_in_soil",
    "hus": "specific_humidity",
    "ps": "surface_air_pressure",
    "psl": "air_pressure_at_mean_sea_level",
    "sfcWindmax": "wind_speed",
    "rsus": "surface_upwelling_shortwave_flux_in_air",
    "rlds": "surface_downwelling_longwave_flux_in_air",
    "rlus": "surface_upwelling_longwave_flux_in_air",
    "rsdt": "toa_incoming_shortwave_flux",
    "rsut": "toa_outgoing_shortwave_flux",
    "rlut": "toa_outgoing_longwave_flux",
    "clwvi": "atmosphere_mass_content_of_cloud_condensed_water",
    "clivi": "atmosphere_mass_content_of_cloud_ice",
    "mrro": "runoff_flux",
    "mrros": "surface_runoff_flux",
    # ERA5
    "cp": "convective_precipitation_amount",
    "lsp": "stratiform_precipitation_amount",
    "sf": "lwe_thickness_of_snowfall_amount",
    "sd": "lwe_thickness_of_surface_snow_amount",
    "tcwv": "atmosphere_mass_content_of_water_vapor",
    "si10": "wind_speed",
    "q": "specific_humidity",
    "tcc": "cloud_area_fraction",
    "ci": "sea_ice_area_fraction",
    "lsm": "land_area_fraction",
    "sp": "surface_air_pressure",
    "msl": "air_pressure_at_mean_sea_level",
    "ssrd": "integral_wrt_time_of_surface_downwelling_shortwave_flux_in_air",
    "strd": "integral_wrt_time_of_surface_downwelling_longwave_flux_in_air",
    "ssr": "integral_wrt_time_of_surface_net_downward_shortwave_flux",
    "tisr": "integral_wrt_time_of_toa_incoming_shortwave_flux",
    "fdir": "integral_wrt_time_of_surface_direct_downwelling_shortwave_flux_in_air",
    "blh": "atmosphere_boundary_layer_thickness",
    "cape": "atmosphere_convective_available_potential_energy",
    "i10fg": "wind_speed_of_gust",
    "ro": "runoff_amount",
    "sro": "surface_runoff_amount",
    "tclw": "atmosphere_mass_content_of_cloud_liquid_water",
    "tciw": "atmosphere_mass_content_of_cloud_ice",
    "clwc": "mass_fraction_of_cloud_liquid_water_in_air",
    "ciwc": "mass_fraction_of_cloud_ice_in_air",
    "tprate": "precipitation_flux",
    "mtpr": "precipitation_flux",
    "avg_tprate": "precipitation_flux",
    "crr": "convective_rainfall_flux",
    "lsrr": "stratiform_rainfall_flux",
    "csfr": "convective_snowfall_flux",
    "lssfr": "stratiform_snowfall_flux",
    "avg_tsrwe": "snowfall_flux",
    "lcc": "low_type_cloud_area_fraction",
    "mcc": "medium_type_cloud_area_fraction",
    "hcc": "high_type_cloud_area_fraction",
    "fal": "surface_albedo",
    "snowc": "surface_snow_area_fraction",
    "sde": "surface_snow_thickness",
    "swvl1": "volume_fraction_of_condensed_water_in_soil",
    "swvl2": "volume_fraction_of_condensed_water_in_soil",
    "swvl3": "volume_fraction_of_condensed_water_in_soil",
    "swvl4": "volume_fraction_of_condensed_water_in_soil",
    # WRF (no standard names in its files)
    "RAINNC": "precipitation_amount",
    "RAINC": "convective_precipitation_amount",
    "RAINSH": "precipitation_amount",
    "SNOWNC": "snowfall_amount",
    "GRAUPELNC": "graupel_amount",
    "SWDOWN": "surface_downwelling_shortwave_flux_in_air",
    "GLW": "surface_downwelling_longwave_flux_in_air",
    "Q2": "humidity_mixing_ratio",
    "SNOW": "surface_snow_amount",
    "SNOWH": "surface_snow_thickness",
    "PBLH": "atmosphere_boundary_layer_thickness",
    "PSFC": "surface_air_pressure",
    # MERRA-2
    "PRECTOT": "precipitation_flux",
    "PRECTOTCORR": "precipitation_flux",
    "PRECTOTLAND": "precipitation_flux",
    "PRECCON": "convective_precipitation_flux",
    "PRECSNO": "snowfall_flux",
    "QV2M": "specific_humidity",
    "SPEED": "wind_speed",
    "CLDTOT": "cloud_area_fraction",
    "TQV": "atmosphere_mass_content_of_water_vapor",
    # GPM IMERG (V07, V06), GPCP, CHIRPS, Daymet, E-OBS
    "precipitation": "lwe_precipitation_rate",
    "precipitationCal": "lwe_precipitation_rate",
    "precip": "lwe_precipitation_rate",
    "prcp": "lwe_precipitation_rate",
    "rr": "lwe_precipitation_rate",
}
LONG_NAMES = {
    "fraction of cloud cover": "cloud_area_fraction_in_atmosphere_layer",
    "precipitation": "lwe_precipitation_rate",
    "total precipitation": "lwe_thickness_of_precipitation_amount",
    "total precipitation rate": "precipitation_flux",
    "mean total precipitation rate": "precipitation_flux",
    "time-mean total precipitation rate": "precipitation_flux",
    "precipitation rate": "lwe_precipitation_rate",
    "rainfall": "rainfall_amount",
    "snowfall": "lwe_thickness_of_snowfall_amount",
    "total cloud cover": "cloud_area_fraction",
    "low cloud cover": "low_type_cloud_area_fraction",
    "medium cloud cover": "medium_type_cloud_area_fraction",
    "high cloud cover": "high_type_cloud_area_fraction",
    "forecast albedo": "surface_albedo",
    "snow cover": "surface_snow_area_fraction",
    "snow depth": "surface_snow_thickness",
    "wind speed": "wind_speed",
}
"""Long names of variables whose short names vary or mean other things elsewhere (ERA5's
``cc``; a file's own ``rain``): known by their long name, for files without a standard_name."""


def era5_relative_humidity(variable: xr.DataArray, name: str) -> bool:
    """Whether a variable is ERA5's relative humidity (``r``: GRIB parameter 157, or its name or
    long name where the file gives no standard name), which is over ice below -23 C and passes
    100% there; CMIP's ``hurs`` and other ``relative_humidity`` stay within 0..100%."""
    attrs = variable.attrs
    if attrs.get("GRIB_paramId") == 157:
        return True
    named = str(attrs.get("long_name", "")).strip().lower() == "relative humidity"
    standard_name = attrs.get("standard_name")
    return named and (name == "r" or not standard_name or not valid_standard_name(standard_name))


# CF 3.3: lower-case letters, digits and underscores, starting with a letter, and optionally one
# of the standard modifiers after a space
def physical_bounds(variable: xr.DataArray, name: str) -> tuple[Bounds, str | None]:
    """The (lower, upper) limits a variable's values respect (None: no limit), and their source.

    From the ``standard_name`` (or, without one, a CMIP, ERA5, MERRA-2 or WRF short name such as
    ``pr``, ``ssrd`` or ``RAINNC``): non-negative quantities (precipitation, humidity, wind
    speed, snow, one-way radiative fluxes, amounts of a constituent...) and
    fractions (0..1, or 0..100 with units ``%``; only non-negative when the units say neither).
    ``valid_min``/``valid_max``/``valid_range`` narrow them further, unless the variable was
    packed (they then hold packed numbers).
    """
    attrs = variable.attrs
    standard_name = attrs.get("standard_name")
    source = f"standard_name {standard_name}"
    if not valid_standard_name(standard_name):
        standard_name = None  # ERA5's "unknown"
    if not standard_name and name in SHORT_NAMES:
        standard_name = SHORT_NAMES[name]
        source = f"variable name {name} ({standard_name})"
    long_name = str(attrs.get("long_name", "")).strip().lower()
    if not standard_name and long_name in LONG_NAMES:
        standard_name = LONG_NAMES[long_name]
        source = f"long_name {attrs['long_name']} ({standard_name})"
    units = str(attrs.get("units", "")).strip()
    if not standard_name and units in RANGE_UNITS:
        standard_name = "area_fraction"  # whatever it is a fraction of, the units say 0..1
        source = f"units {units!r}"
    lower = upper = None
    sources = []
    if era5_relative_humidity(variable, name):
        lower = 0.0
        sources.append(f"relative humidity {name} as ERA5's (over ice: no upper limit)")
    elif non_negative(standard_name) and _against_positive(standard_name, attrs.get("positive")):
        # a one-way flux whose `positive` direction is the other way: stored as negative values
        upper = 0.0
        sources.append(f"{source}, positive {attrs['positive']!r}: stored negative")
    elif non_negative(standard_name):
        lower = 0.0
        if is_fraction(standard_name) and units in PERCENT_UNITS | FRACTION_UNITS | RATIO_UNITS:
            upper = 100.0 if units in PERCENT_UNITS else 1.0
        elif is_fraction(standard_name):
            source += f"; no upper limit: its units {units!r} say neither % nor 1"
        sources.append(source)
    packed = {"scale_factor", "add_offset"} & (set(attrs) | set(variable.encoding))
    stored = np.dtype(variable.encoding.get("dtype", variable.dtype))
    if (variable.dtype.kind == "u" or stored.kind == "u") and not packed and (lower is None or lower < 0):
        # unsigned integers (counts, category numbers) hold no negative value
        lower = 0.0 if upper is None or upper >= 0 else lower
        sources.append(f"unsigned storage ({stored if stored.kind == 'u' else variable.dtype})")
    declared = _declared_range(attrs) if not packed else (None, None)
    narrowed = _tighter(lower, declared[0], max), _tighter(upper, declared[1], min)
    # a declared range that contradicts the standard name's is a broken attribute: ignored
    if declared != (None, None) and (None in narrowed or narrowed[0] < narrowed[1]):
        lower, upper = narrowed
        sources.append("valid range")
    return (lower, upper), ("; ".join(sources) or None)


def _against_positive(standard_name: str, positive) -> bool:
    """Whether a one-way flux's ``positive`` attribute points against its direction (an
    outgoing flux with ``positive: "down"``), so that its values are stored negative."""
    direction = str(positive or "").strip().lower()
    if direction not in ("up", "down") or not any(way in f"_{standard_name}" for way in ONE_WAY):
        return False
    upward = any(way in f"_{standard_name}" for way in UPWARD)
    return (direction == "down") == upward


def _declared_range(attrs: dict) -> Bounds:
    if "valid_range" in attrs:
        low, high = np.asarray(attrs["valid_range"], dtype=np.float64).ravel()[:2]
        return float(low), float(high)
    low, high = attrs.get("valid_min"), attrs.get("valid_max")
    return (None if low is None else float(low)), (None if high is None else float(high))


def _tighter(current: float | None, declared: float | None, pick) -> float | None:
    if declared is None:
        return current
    return declared if current is None else pick(current, declared)


# families of variables whose values come in order in every cell, lowest first (CMIP, E-OBS,
# ERA5 and common short names); a file may hold any two or more of a family
ORDERED_NAMES = (
    ("tasmin", "tas", "tasmax"),
    ("tn", "tg", "tx"),
    ("tmin", "tmean", "tmax"),
    ("mn2t", "mx2t"),
    ("mn2t24", "mx2t24"),
)
_STATISTIC_RANK = {"minimum": 0, "mean": 1, "maximum": 2}


def ordered_chains(ds: xr.Dataset, variables: list[str]) -> list[tuple[str, ...]]:
    """Variables whose values must come in order in every cell, each chain lowest first: daily
    minimum <= mean <= maximum, known by name (:data:`ORDERED_NAMES`) or, for others, by one
    ``standard_name`` whose ``cell_methods`` end in ``minimum``, ``mean`` and ``maximum`` over
    the same dimension. Only variables of the same shape and units are chained."""
    return [chain for chain in candidate_chains(ds, variables) if chain_mismatch(ds, chain) is None]


def candidate_chains(ds: xr.Dataset, variables: list[str]) -> list[tuple[str, ...]]:
    """The chains that names and cell methods imply (:func:`ordered_chains`), before
    :func:`chain_mismatch` keeps those whose variables can be compared cell by cell."""
    chains = []
    for family in ORDERED_NAMES:
        present = tuple(name for name in family if name in variables)
        if len(present) > 1:
            chains.append(present)
    named = {name for chain in chains for name in chain}
    statistics: dict[tuple, dict[int, list[str]]] = {}
    for name in variables:
        attrs = ds[name].attrs
        method = str(attrs.get("cell_methods", "")).split()
        if name in named or "standard_name" not in attrs or len(method) < 2 or method[-1] not in _STATISTIC_RANK:
            continue
        key = (attrs["standard_name"], str(attrs.get("units")), method[-2])
        statistics.setdefault(key, {}).setdefault(_STATISTIC_RANK[method[-1]], []).append(name)
    for ranks in statistics.values():
        if len(ranks) > 1 and all(len(names) == 1 for names in ranks.values()):
            chains.append(tuple(ranks[rank][0] for rank in sorted(ranks)))
    return chains


def chain_mismatch(ds: xr.Dataset, chain: tuple[str, ...]) -> str | None:
    """What keeps the variables of ``chain`` from being compared cell by cell (other
    dimensions or shapes, other units), or None. Units spelt otherwise (``K``, ``kelvin``) are
    the same units."""
    from climgen.io.units import same_units

    variables = [ds[name] for name in chain]
    if len({(variable.dims, variable.shape) for variable in variables}) > 1:
        return "dimensions and shape"
    units = [str(variable.attrs.get("units", "")).strip() for variable in variables]
    if not all(same_units(units[0], other) for other in units[1:]):
        return f"units {sorted(set(units))}"
    return None


# global attributes that describe the input file alone: its unique id (CMIP's tracking_id),
# creation date and resolution; an output keeping them would claim to be that file
