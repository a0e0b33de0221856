"""What the commands share: option types, parsers of ``NAME=VALUE`` options, the summary line."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer


def command_line() -> str:
    """The command as typed, for the output's history."""
    return "climgen " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def parse_covariates(specs: list[str] | None) -> dict:
    from climgen.errors import ConfigError
    from climgen.io.open import open_covariate, parse_covariate

    parsed = [parse_covariate(spec) for spec in specs or []]
    names = [name for name, _, _ in parsed]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"covariate {twice[0]!r} is given twice; give each covariate once, under its own name")
    return {name: open_covariate(path, variable, name) for name, path, variable in parsed}


def parse_attributes(specs: list[str] | None) -> dict | None:
    """``KEY=VALUE`` global attributes (creator_name=..., license=...) to {KEY: VALUE}."""
    from climgen.errors import ConfigError

    attributes = {}
    for spec in specs or []:
        key, equals, value = spec.partition("=")
        if not (key.strip() and equals):
            raise ConfigError(f"--attribute takes KEY=VALUE (e.g. creator_name='A. Person'), got {spec!r}")
        attributes[key.strip()] = value
    return attributes or None


def parse_bounds(specs: list[str] | None) -> dict | None:
    """``NAME=LOWER:UPPER`` (either side may be empty: no limit) to {NAME: (LOWER, UPPER)}."""
    from climgen.errors import ConfigError

    bounds = {}
    for spec in specs or []:
        name, equals, limits = spec.partition("=")
        lower, colon, upper = limits.partition(":")
        try:
            if not (name and equals and colon):
                raise ValueError
            limits = tuple(float(v) if v.strip() else None for v in (lower, upper))
        except ValueError:
            raise ConfigError(f"--bounds takes NAME=LOWER:UPPER (e.g. pr=0: or sftlf=0:1), got {spec!r}") from None
        if name in bounds:
            raise ConfigError(f"--bounds for {name!r} given twice: give each variable's bounds once")
        bounds[name] = limits
    return bounds or None


def parse_order(specs: list[str] | None) -> tuple | None:
    """``LOW,MID,HIGH`` chains (``none``: no chain at all) to a tuple of name tuples; None
    without any (chains from the metadata)."""
    from climgen.errors import ConfigError

    if not specs:
        return None
    if [spec.strip().lower() for spec in specs] == ["none"]:
        return ()
    chains = tuple(tuple(name.strip() for name in spec.split(",")) for spec in specs)
    if any(len(chain) < 2 or "" in chain for chain in chains):
        raise ConfigError(f"--order takes LOW,HIGH or LOW,MID,HIGH (e.g. tasmin,tas,tasmax) or none, got {list(specs)}")
    return chains


def parse_gain(text: str) -> float | str:
    """``auto`` or a number, for ``--residual-gain`` (the range is checked with the config)."""
    from climgen.errors import ConfigError

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--residual-gain takes 'auto' or a number from 0 to 1 (up to 2), got {text!r}") from None


def summary(result, seconds: float, source_shape: tuple[int, int]) -> str:
    import json

    import numpy as np

    depth = result["refinement_depth"].values
    counts = {int(k): int(v) for k, v in zip(*np.unique(depth, return_counts=True), strict=True)}
    total = sum(counts.values())
    histogram = ", ".join(f"depth {k}: {100 * v / total:.0f}%" for k, v in sorted(counts.items()))
    fine_shape = result["refinement_depth"].shape
    from climgen.conservation import format_bounds
    from climgen.depth.skill import detail_kept
    from climgen.pipeline import depth_policy_text

    provenance = json.loads(result.attrs["climgen_provenance"])
    compute = provenance["compute"]
    policy = depth_policy_text(provenance.get("depth_policy", {}))
    if policy:
        histogram += f" ({policy})"
    bounded = [f"{name} {format_bounds((b['lower'], b['upper']))}" for name, b in provenance.get("physical_bounds", {}).items()]
    ordered = [" <= ".join(chain) for chain in provenance.get("ordered_variables", [])]
    return (
        f"grid {source_shape[0]}x{source_shape[1]} -> {fine_shape[0]}x{fine_shape[1]}; "
        f"refinement depth (share of fine cells): {histogram}; "
        f"compute {compute['macs'] / 1e9:.2f} GMAC ({100 * compute['fraction_of_uniform']:.0f}% of uniform); "
        + (f"kept within {', '.join(bounded)}; " if bounded else "")
        + (f"kept in order {', '.join(ordered)}; " if ordered else "")
        + ("blocks match by area-weighted means; " if provenance.get("conservation") == "area" else "")
        + "".join(f"{line}; " for line in detail_kept(provenance.get("residual_gains", {})))
        + f"{seconds:.1f} s"
    )


Workers = Annotated[int | None, typer.Option(help="Start a local dask cluster of N worker processes.")]
Scheduler = Annotated[str | None, typer.Option(help="Attach to a running dask scheduler (tcp://host:port).")]
RegionTiles = Annotated[int, typer.Option(help="Tiles per dask task side.")]
TimeChunk = Annotated[int, typer.Option(help="Time steps per dask task.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Wait = Annotated[
    bool, typer.Option("--wait", help="If another climgen process is writing the output, wait for it instead of stopping.")
]
Device = Annotated[
    str, typer.Option(help="Where tasks run the model: auto (a GPU when the worker has one), cpu, cuda, or cuda:N (GPU N).")
]
Precision = Annotated[
    str,
    typer.Option(
        help="The model's precision: auto (bf16 where the device computes it natively: GPUs, CPUs with AVX512-BF16 or "
        "AMX; else float32), float32 or bfloat16. bf16 refines 1.4-1.6 times as fast, within 1% of float32's fine detail."
    ),
]
Attribute = Annotated[
    list[str] | None,
    typer.Option(
        "--attribute",
        help="Global attribute KEY=VALUE of the output (creator_name, creator_email, institution, license, id...); "
        "repeatable. Catalogues (ACDD-1.3) look for who made the data and under which licence: climgen cannot know it.",
    ),
]
