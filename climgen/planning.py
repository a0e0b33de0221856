"""Everything decided before any tile is refined: the model, the complexity scores, the
self-tests (the detail kept, the predicted gain) and the depth of every tile."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import xarray as xr

from climgen import __version__
from climgen._torch import software
from climgen.config import MAX_STAGE_INPUT, SynthesisConfig, parse_limits  # noqa: F401 (public here since 0.1)
from climgen.conservation import Weights
from climgen.depth.complexity import (
    ComplexityScores,
    choose_depth,
    combine_scores,
    depth_thresholds,
    tile_components,
)
from climgen.depth.compute import compute_report, window_cells, window_macs
from climgen.depth.gain import (
    DEFAULT_TOLERANCE,
    GainPrediction,
    depth_by_budget,
    depth_by_tolerance,
    tolerance_for_quality,
)
from climgen.errors import ClimgenWarning, ConfigError, warn_user
from climgen.grid import (
    SpatialAxes,
    cell_weights,
)
from climgen.inputs import (
    _as_dataset,
    _fields,
    _fine_axes,
    _prepare,
    _Prepared,
    check_magnitudes,
    contiguous_input,
    infinite_as_missing,
    wrap_global,
)
from climgen.io import cf
from climgen.models.checkpoint import SHIPPED
from climgen.noise import field_labels
from climgen.tiling import TileLayout


def _scores(ds: xr.Dataset, prepared: _Prepared, factor: int, keep: dict | None = None) -> ComplexityScores:
    """Every field read and scored; with ``keep``, each variable's values (fields, y, x) are
    kept there, so that a refinement in memory does not read its input again."""
    scores = []
    for name in prepared.variables:
        _, values = _fields(ds, name, prepared.axes)
        check_magnitudes(values, name)  # every value is read here, before any refinement
        values = infinite_as_missing(values)
        if keep is not None:
            keep[name] = values
        for field_values in values:
            scores.append(tile_components(field_values, prepared.layout, prepared.covariates, factor, prepared.limits[name]))
    return combine_scores(scores)


def complexity(
    data: xr.Dataset | xr.DataArray,
    factor: int = 4,
    variables=None,
    covariates: Mapping | None = None,
    tile_size: int | None = None,
) -> xr.DataArray:
    """Complexity score of each tile, on the coarse grid: the map that explains where a field
    has detail to add (the depth itself follows the predicted gain, :mod:`climgen.depth.gain`).

    ``data``, ``factor``, ``variables`` and ``covariates`` are as for
    :func:`climgen.pipeline.synthesize`; ``tile_size`` is the tile side in coarse cells
    (default: 32, or less on small domains).
    """
    original = _as_dataset(data)
    config = make_config(variables, factor=factor, tile_size=tile_size)
    original, _ = contiguous_input(cf.decode_packed(original))
    ds, wrap_cells = wrap_global(original, config)
    prepared = _prepare(ds, config, covariates)
    scores = _scores(ds, prepared, config.factor)
    axes = prepared.axes
    values = prepared.layout.tile_map(scores.score).astype(np.float32)
    values = values[:, wrap_cells : values.shape[1] - wrap_cells]  # the input's columns only
    coords = {axes.y: original[axes.y], axes.x: original[axes.x]}
    return xr.DataArray(
        values, dims=(axes.y, axes.x), coords=coords, name="complexity_score", attrs=dict(cf.ANCILLARY_ATTRS["complexity_score"])
    )


@dataclass
class Plan:
    """Everything decided before any tile is refined: grid, model, scores and depth per tile."""

    config: SynthesisConfig
    prepared: _Prepared
    checkpoint: object
    scores: ComplexityScores
    depth: np.ndarray
    fine_axes: dict
    residual_gains: dict = field(default_factory=dict)  # variable -> climgen.depth.skill.ResidualGain
    gain: GainPrediction | None = None  # predicted gain per stage and tile (best-estimate models, adaptive)
    depth_policy: dict = field(default_factory=dict)  # how the depth was chosen, for the provenance
    source: xr.Dataset | None = None  # the input as refined: with wrapped columns on a global grid
    wrap_cells: int = 0  # columns of a global grid copied beyond each edge (cropped from the output)
    longitude_convention: str | None = None  # set when the input's longitudes were made contiguous
    device: str = "auto"  # where the run's model calls go, the planning self-tests' included
    field_labels: dict = field(default_factory=dict)  # variable -> each field's name in its noise keys
    # variable -> its values (fields, y, x) as planning read them (in memory; streaming reads by task)
    coarse_values: dict = field(default_factory=dict, repr=False)
    input_files: list = field(default_factory=list)  # the files the input came from (job_identity.input_files)

    @property
    def full_depth(self) -> int:
        return self.config.factor.bit_length() - 1

    def refiner(self, device: str | None = None):
        """A :class:`~climgen.refine.TileRefiner` on ``device`` (default: the plan's; auto: a
        GPU when torch sees one), in the config's precision."""
        from climgen.refine import TileRefiner, resolve_device

        module, layout = self.checkpoint.module, self.prepared.layout
        return TileRefiner(
            module,
            self.config.factor,
            layout,
            device=resolve_device(device or self.device),
            precision=self.config.precision,
            cell_weights=self.cell_weights,
            sample=self.config.members > 1,
            flip=self.prepared.flip,
            polar_caps=self.polar_caps,
        )

    @property
    def polar_caps(self) -> tuple[int, ...]:
        """The coarse rows of a lat/lon grid centred on a pole (ERA5's and MERRA-2's first and
        last): :class:`~climgen.refine.TileRefiner` gives their fine cells their value."""
        axes = self.prepared.axes
        if axes.kind != "latlon" or self.source is None:
            return ()
        latitudes = np.abs(np.asarray(self.source[axes.y].values, dtype=np.float64))
        return tuple(int(row) for row in np.flatnonzero(np.abs(latitudes - 90.0) < 1e-6))

    @property
    def policy_layout(self) -> TileLayout:
        """The run's layout without the model's margin: the tiling the gain self-tests run on
        and single-scale models count their cells on (:meth:`work`)."""
        return replace(self.prepared.layout, call_margin=0)

    @property
    def run_layout(self) -> TileLayout:
        """The layout the run cuts its model calls on: tiles share a window where that costs
        less than their own windows with the margin the network computes around each."""
        return replace(self.prepared.layout, call_margin=getattr(self.checkpoint.module, "window_margin", 0))

    def deepened(self, depth: np.ndarray) -> np.ndarray:
        """``depth`` with each tile raised to the last stage of a model call the run shares
        across it (:meth:`TileLayout.deepen_within_windows` on :attr:`run_layout`): the run
        computes that stage there anyway, so the tile keeps it, at no cost."""
        return self.run_layout.deepen_within_windows(depth, self.scores.constant)

    def work(self, depth: np.ndarray, deepen: bool = True) -> float:
        """What refining one 2-D field at the policy's ``depth`` costs as the run does it: each
        tile as deep as the windows it shares take it (:meth:`deepened`; ``deepen=False`` for
        a map that already is), every model call with the margin the network computes around
        its window. MACs (an ensemble member's with its sample head); cells processed for
        single-scale models."""
        final = self.deepened(depth) if deepen else depth
        module = self.checkpoint.module
        if not self.checkpoint.multi_scale:
            return window_cells(self.policy_layout, final, single_scale=True)
        return window_macs(module, self.run_layout, final, self.draws_members, self.prepared.covariates is not None)

    def residual_gain(self, name: str) -> float:
        """The share of the model's learned detail kept for variable ``name``."""
        return self.residual_gains[name].gain if name in self.residual_gains else 1.0

    @property
    def draws_members(self) -> bool:
        """Whether the model draws ensemble members from its sample head (``members > 1`` with
        a model whose best estimate takes no noise): they run the whole model whatever the
        residual gain, and cost the sample head too."""
        return self.config.members > 1 and getattr(self.checkpoint.module, "best_estimate_without_noise", False)

    def model_fields(self, field_counts: Mapping[str, int]) -> int:
        """The 2-D fields (members included) that go through the model, from each variable's
        field count: a variable that keeps none of the learned detail skips the network."""
        samples = self.draws_members
        return sum(
            count * self.config.members for name, count in field_counts.items() if samples or self.residual_gain(name) != 0
        )

    @property
    def cell_weights(self) -> Weights:
        """The fine cells' area factors (rows, columns) with ``conservation="area"``, else None."""
        if self.config.conservation != "area":
            return None
        axes = self.prepared.axes
        return cell_weights(self.fine_axes[axes.y][1].values, self.fine_axes[axes.x][1].values, axes.kind)

    def seed_keys(self, name: str, indices, member: int) -> list[tuple]:
        """Noise keys of fields ``indices`` (flat indices over the leading dimensions): each
        named by its leading coordinates (:func:`climgen.noise.field_labels`)."""
        labels = self.field_labels.get(name)
        return [(self.config.seed, name, labels(index) if labels else int(index), member) for index in indices]

    def _sample_scale(self) -> dict:
        """The scale of the drawn detail per chain length, when members are drawn (the model's
        calibration, kept in its JSON beside the weights)."""
        scales = getattr(self.checkpoint.module.config, "sample_scale", None)
        return {"sample_scale": list(scales)} if self.draws_members and scales else {}

    def provenance(self, fields_refined: int, seconds: float) -> dict:
        config, layout = self.config, self.prepared.layout
        return {
            "climgen_version": __version__,
            "model": self.checkpoint.name,
            "model_sha256": self.checkpoint.sha256,
            "model_config_sha256": self.checkpoint.config_sha256,
            **{k: v for k, v in config.as_dict().items() if k != "model"},
            "tile_size": layout.tile,
            "halo": layout.halo,
            "later_halo": layout.later_halo,
            "merge_tiles": layout.merge,
            # a checkpoint of one's own by its absolute path, as the inputs are named
            "model_argument": config.model if config.model in SHIPPED else os.path.abspath(config.model),
            "covariates": self.prepared.covariate_names,
            "covariate_sources": self.prepared.covariate_sources,
            "depth_policy": self.depth_policy,
            "depth_histogram": {str(k): int((self.depth == k).sum()) for k in range(self.full_depth + 1)},
            "compute": compute_report(
                self.checkpoint.module,
                layout,
                self.depth,
                self.full_depth,
                fields_refined,
                self.draws_members,
                self.prepared.covariates is not None,
            ),
            "residual_gains": {name: gain.as_dict() for name, gain in self.residual_gains.items()},
            "physical_bounds": {
                name: {"lower": limits[0], "upper": limits[1], "from": source}
                for name, (limits, source) in self.prepared.bounds.items()
                if limits != (None, None)
            },
            "ordered_variables": [list(chain) for chain in self.prepared.order],
            **({"longitude_wrap_cells": self.wrap_cells} if self.wrap_cells else {}),
            **self._sample_scale(),
            **({"longitudes_converted_to": self.longitude_convention} if self.longitude_convention else {}),
            "inputs": self.input_files,
            "software": software(),
            "seconds": round(seconds, 3),
        }

    @property
    def input_shape(self) -> tuple[int, int]:
        """The input's coarse (rows, columns): the layout's without a global grid's wrapped columns."""
        rows, columns = self.prepared.layout.shape
        return rows, columns - 2 * self.wrap_cells

    def crop(self, result: xr.Dataset) -> xr.Dataset:
        """``result`` on the fine grid of the padded input, without the wrapped columns."""
        if not self.wrap_cells:
            return result
        x, cut = self.prepared.axes.x, self.wrap_cells * self.config.factor
        return result.isel({x: slice(cut, result.sizes[x] - cut)})


def make_config(variables=None, model="default", **options) -> SynthesisConfig:
    """A validated :class:`SynthesisConfig` from keyword arguments (variables as list or "a,b")."""
    if isinstance(variables, str):
        variables = tuple(v for v in variables.split(",") if v)
    return SynthesisConfig(variables=tuple(variables) if variables is not None else None, model=str(model), **options)


def plan(
    ds: xr.Dataset,
    config: SynthesisConfig,
    covariates: Mapping | None = None,
    scorer: Callable | None = None,
    device: str = "auto",
) -> Plan:
    """Validate the request, load the model, score the tiles and choose their depth.

    ``scorer(ds, prepared, factor)`` computes the scores (default: every field read and scored
    here; the streaming path scores time chunks as dask tasks). The self-tests that choose the
    depth run on ``device``, the run's, so the map does not depend on a GPU the run was told
    not to use.
    """
    from climgen.io.acdd import standing_attributes
    from climgen.job_identity import input_files
    from climgen.models.checkpoint import load_checkpoint

    files = input_files(ds)  # before any change to the dataset can drop its encoding
    standing = standing_attributes()  # the user's creator, publisher...: read before any work, recorded
    if standing:
        config = config.model_copy(update={"attributes": standing | (config.attributes or {})})
    ds, convention = contiguous_input(cf.decode_packed(ds))
    ds, wrap_cells = wrap_global(ds, config)
    prepared = _prepare(ds, config, covariates)
    checkpoint = load_checkpoint(config.model)
    slots = checkpoint.module.config.covariate_slots
    if prepared.covariates is not None and prepared.covariates.shape[0] > slots:
        raise ConfigError(f"model {checkpoint.name!r} takes at most {slots} covariates, got {prepared.covariates.shape[0]}")
    if checkpoint.architecture == "hierarchical" and len(prepared.covariate_names) > 1:
        warn_user(
            f"covariates {', '.join(map(repr, prepared.covariate_names))}: model {checkpoint.name!r} learned from one "
            "covariate related to the field at a time, and two related ones make it worse (a temperature following real "
            "terrain at x4: 0.15 of bicubic's RMSE with elevation, 0.35-0.38 with elevation and a land mask or elevation "
            "again); give the one that explains the field best",
            ClimgenWarning,
        )
    if not checkpoint.multi_scale:
        model_factor = checkpoint.module.config.factor
        if config.factor != model_factor:
            raise ConfigError(f"model {checkpoint.name!r} is a single-scale {checkpoint.architecture} for x{model_factor} only")
        if config.budget is not None or config.quality is not None or config.tolerance is not None:
            raise ConfigError(
                f"model {checkpoint.name!r} refines every tile fully: budget, quality and tolerance need the default model"
            )
    if checkpoint.draws_samples and (config.quality is not None or config.tolerance is not None):
        raise ConfigError(
            f"model {checkpoint.name!r} samples detail, whose gain no error test can judge: "
            "quality and tolerance need a best-estimate model (its depth follows the complexity score, or budget)"
        )
    values: dict = {}
    scores = scorer(ds, prepared, config.factor) if scorer else _scores(ds, prepared, config.factor, values)
    full_depth = config.factor.bit_length() - 1
    result = Plan(config, prepared, checkpoint, scores, np.zeros(1), _fine_axes(ds, prepared.axes, config.factor))
    result.coarse_values, result.input_files = values, files
    result.source, result.wrap_cells, result.longitude_convention = ds, wrap_cells, convention
    result.device = device
    axes = (prepared.axes.y, prepared.axes.x)
    result.field_labels = {name: field_labels(ds[name], axes) for name in prepared.variables}
    result.residual_gains = residual_gains(ds, result)
    adaptive = config.adaptive and checkpoint.multi_scale  # baselines jump the whole factor
    cost = result.work  # a budget is of the work the run will do
    # members of a model that gives its best estimate without noise draw their spread at every
    # stage: a tile stopped early would keep none of the finer stages' spread (under-dispersed)
    sampled = config.members > 1 and getattr(checkpoint.module, "best_estimate_without_noise", False)
    chosen_depth = config.budget is not None or config.tolerance is not None or config.quality is not None
    if not adaptive or (sampled and not chosen_depth):
        result.depth = choose_depth(scores, full_depth, adaptive=False)
        result.depth_policy = {"policy": "uniform"}
        if adaptive:
            result.depth_policy["why"] = "ensemble members draw spread at every stage"
    elif checkpoint.draws_samples:
        # a model that samples detail keeps its stages where the complexity score asks for
        # them: they add the members' spread, which no error test can value
        result.depth = choose_depth(scores, full_depth, budget=config.budget, cost=cost, second_stage_score=0.0)
        result.depth_policy = (
            {"policy": "budget", "by": "complexity score", "budget": config.budget}
            if config.budget is not None
            else {
                "policy": "thresholds",
                "thresholds": depth_thresholds(full_depth, "covariate" in scores.components, second_stage_score=0.0),
            }
        )
    else:
        result.gain = predicted_gains(ds, result)
        if config.budget is not None:
            result.depth = depth_by_budget(result.gain, config.budget, cost)
            result.depth_policy = {"policy": "budget", "by": "predicted gain", "budget": config.budget}
        else:
            tolerance = config.tolerance
            if config.quality is not None:
                tolerance = tolerance_for_quality(config.quality)
            tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
            result.depth = depth_by_tolerance(result.gain, tolerance)
            result.depth_policy = {"policy": "predicted gain", "tolerance": round(tolerance, 6)}
            if config.quality is not None:
                result.depth_policy["quality"] = config.quality
        result.depth_policy |= result.gain.as_dict()
    # a model of unpadded convolutions computes a margin around every window it is given: the
    # calls then share a window where that costs less than their own windows, margins included;
    # a tile inside a window the run refines deeper anyway takes that depth (no more model
    # calls, so no more cost), and the depth map says what each tile got
    prepared.layout = result.run_layout
    result.depth = result.deepened(result.depth)
    return result


def depth_policy_text(policy: dict) -> str:
    """A plan's ``depth_policy`` in words, for command-line summaries (a stage no score
    reaches reads "never")."""

    def listed(values: list[float]) -> str:
        return ", ".join(f"{t:.2f}" if np.isfinite(t) else "never" for t in values)

    name = policy.get("policy")
    if name == "predicted gain":
        quality = f" (quality {policy['quality']:g})" if "quality" in policy else ""
        return (
            f"predicted gain, tolerance {policy['tolerance']:.3g} of full depth's squared error{quality}; "
            f"skill {policy.get('skill', 0):.2f}, octave ratio {policy.get('octave_ratio', 0):.2f}"
            + (
                f", {policy['edge_share']:.0%} of cells on edges (coasts, bounds, covariate detail)"
                if policy.get("edge_share")
                else ""
            )
        )
    if name == "budget":
        return f"budget {policy.get('budget')} by {policy.get('by', 'predicted gain')}"
    texts = {"thresholds": f"score thresholds {listed(policy.get('thresholds', []))}", "uniform": "uniform full depth"}
    return texts.get(name, "")


def gain_fields(ds: xr.Dataset, name: str, axes: SpatialAxes, count: int, read: np.ndarray | None = None) -> list[np.ndarray]:
    """Up to ``count`` 2-D fields of variable ``name``, evenly spread over its other
    dimensions (only those are read, unless the values ``read`` already are given): what the
    self-tests look at."""
    variable = ds[name].transpose(..., axes.y, axes.x)
    leading = list(np.ndindex(*variable.shape[:-2]))
    picks = np.unique(np.linspace(0, len(leading) - 1, min(count, len(leading))).round().astype(int))
    if read is not None:
        return [read[i] for i in picks]
    import dask

    # one compute for all of them: fields in one chunk of a lazy input share its read
    fields = dask.compute(*[variable[leading[i]].data for i in picks])
    return [infinite_as_missing(np.asarray(values, dtype=np.float64)) for values in fields]


def _tiles_without_data(fields: list[np.ndarray], layout: TileLayout) -> np.ndarray:
    """Per tile, whether none of ``fields`` has a value in its core."""
    valid = np.any([np.isfinite(values) for values in fields], axis=0)
    empty = np.zeros(layout.grid_shape, dtype=bool)
    for tile in layout:
        empty[tile.row, tile.col] = not valid[tile.core].any()
    return empty


def predicted_gains(ds: xr.Dataset, job: Plan) -> GainPrediction:
    """Each stage's predicted gain per tile (:mod:`climgen.depth.gain`): every variable self-tested
    one scale coarser on up to :data:`climgen.depth.gain.TEST_FIELDS` of its fields, at its share of
    the learned detail; a tile gains what its neediest variable gains."""
    from climgen.depth import gain

    prepared, refiner = job.prepared, job.refiner()
    guided = gain.covariate_detail(prepared.covariates, job.config.factor)
    predictions, empties = [], []
    for name in prepared.variables:
        refine = gain.self_test_refine(
            refiner.with_gain(job.residual_gain(name)), prepared.covariates, prepared.limits[name], (job.config.seed, name)
        )
        fields = gain_fields(ds, name, prepared.axes, gain.TEST_FIELDS, job.coarse_values.get(name))
        sums = gain.self_test_sums(refine, fields, prepared.layout, prepared.limits[name], guided, job.wrap_cells)
        # tiles where this variable has no data are no reason to refine the others deeper
        empties.append(_tiles_without_data(fields, prepared.layout))
        predictions.append(gain.predict(sums, job.full_depth, job.scores.constant | empties[-1]))
    combined = gain.combine(predictions)
    # a tile without data in every variable's tested fields may have some in the others (the
    # scores read them all): its gain is not known, and it takes full depth
    unread = np.all(empties, axis=0) & ~job.scores.constant
    if unread.any():
        untested = unread if combined.untested is None else combined.untested | unread
        combined = replace(combined, constant=combined.constant & ~unread, untested=untested)
    unknown = combined.unknown()
    if unknown.all() and unknown.size:
        warn_user(
            f"the domain ({' x '.join(map(str, job.input_shape))} coarse cells) is too small for the gain "
            f"self-test (it averages the field by 2 and needs {gain.MIN_CELLS} cells a side): every tile takes full depth",
            ClimgenWarning,
        )
    return combined


def residual_gains(ds: xr.Dataset, job: Plan) -> dict:
    """Each variable's share of the model's learned detail: the given ``residual_gain``, or
    with ``"auto"`` the result of :func:`climgen.depth.skill.self_test` on up to
    :data:`climgen.depth.skill.TEST_FIELDS` of its fields, evenly spread (only those are read).
    Models trained to sample detail (:attr:`~climgen.models.checkpoint.Checkpoint.draws_samples`:
    the ``amsgm-stage2`` ablations) and the hierarchical generator keep it whole."""
    from climgen.depth.skill import TEST_FIELDS, ResidualGain, self_test

    config, prepared = job.config, job.prepared
    if config.residual_gain != "auto":
        if not job.checkpoint.multi_scale and config.residual_gain != 1:
            raise ConfigError(
                f"residual_gain applies to the multi-scale generator, not to {job.checkpoint.architecture!r} models"
            )
        return {name: ResidualGain(gain=float(config.residual_gain), note="given") for name in prepared.variables}
    if not job.checkpoint.multi_scale:
        return {}
    if getattr(job.checkpoint.module, "best_estimate_without_noise", False):
        # the hierarchical model's mean is trained on the real corpus: a test one octave up, on
        # a grid half as fine, damped it where keeping it whole was better (48 of 52 held-out runs)
        note = "not tested: the hierarchical model's best estimate keeps its detail whole"
        return {name: ResidualGain(note=note) for name in prepared.variables}
    if job.checkpoint.draws_samples:
        # a sample's detail is meant to differ from the truth's by the field's own variability:
        # a least-squares test would damp it towards the mean and take the ensemble's spread away
        note = "not tested: the model draws detail as samples (adversarial training), which an RMSE test would damp"
        return {name: ResidualGain(note=note) for name in prepared.variables}
    refiner = job.refiner()
    gains = {}
    for name in prepared.variables:
        fields = gain_fields(ds, name, prepared.axes, TEST_FIELDS, job.coarse_values.get(name))
        gains[name] = self_test(refiner, fields, prepared.covariates, (config.seed, name))
    return gains
