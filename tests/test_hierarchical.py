"""The hierarchical generator: a best estimate without noise, members with, from one model."""

import numpy as np
import torch

from climgen.models.checkpoint import load_checkpoint, save_checkpoint
from climgen.models.generator import coarsen
from climgen.models.hierarchical import HierarchicalConfig, HierarchicalGenerator
from climgen.testing import make_dataset, rough_field

SMALL = HierarchicalConfig(channels=8, blocks=2, sampler_channels=4)


def _model(seed: int = 0) -> HierarchicalGenerator:
    """A small model with every weight random (the heads start at zero when untrained)."""
    torch.manual_seed(seed)
    model = HierarchicalGenerator(SMALL).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model


def _coarse(size: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.tensor(rough_field((size, size), seed=seed) * 50 + 280, dtype=torch.float32)[None, None]


@torch.no_grad()
def test_best_estimate_needs_no_noise_and_members_differ():
    model, coarse = _model(), _coarse()
    best = model(coarse, stages=2)
    assert torch.equal(best[-1], model(coarse, stages=2)[-1])
    first = model(coarse, stages=2, generator=torch.Generator().manual_seed(3))[-1]
    again = model(coarse, stages=2, generator=torch.Generator().manual_seed(3))[-1]
    other = model(coarse, stages=2, generator=torch.Generator().manual_seed(4))[-1]
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, best[-1])
    for output, factor in ((best[-1], 4), (first, 4), (best[0], 2)):  # every member keeps the coarse values
        torch.testing.assert_close(coarsen(output, factor), coarse, rtol=1e-5, atol=1e-3)


@torch.no_grad()
def test_untrained_heads_give_bicubic_and_scale_with_the_field():
    untrained = HierarchicalGenerator(SMALL).eval()
    coarse = _coarse()
    samples = untrained(coarse, stages=1, generator=torch.Generator().manual_seed(0))[-1]
    torch.testing.assert_close(samples, untrained(coarse, stages=1)[-1])  # zero heads: no spread, no detail
    model = _model()
    reference = model(coarse, stages=2)[-1]
    scaled = model(3.0 * coarse - 100.0, stages=2)[-1]  # local standardisation: affine equivariant
    torch.testing.assert_close(scaled, 3.0 * reference - 100.0, rtol=1e-4, atol=1e-2)


@torch.no_grad()
def test_output_depends_only_on_cells_within_reach():
    model, coarse = _model(), _coarse(40)
    changed = coarse.clone()
    changed[..., :, 30:] += 25.0  # a step far to the east
    left, right = model(coarse, stages=1)[-1], model(changed, stages=1)[-1]
    reach = model.stage_network.reach + SMALL.roughness_window // 2 + SMALL.norm_window
    untouched = 2 * (30 - reach)
    assert untouched > 0
    # the same up to float rounding (the standardisation subtracts the window's mean first)
    torch.testing.assert_close(left[..., :untouched], right[..., :untouched], rtol=0, atol=1e-3)
    assert (left[..., 60:] - right[..., 60:]).abs().min() > 1.0


def test_checkpoint_round_trip_and_pipeline_members(tmp_path):
    model = _model()
    path = save_checkpoint(model, tmp_path / "hierarchical-small", "hierarchical", {"name": "small"})
    checkpoint = load_checkpoint(path)
    assert checkpoint.multi_scale and not checkpoint.draws_samples
    coarse = _coarse()
    with torch.no_grad():
        torch.testing.assert_close(checkpoint.module(coarse, stages=2)[-1], model(coarse, stages=2)[-1])
    ds = make_dataset("latlon", shape=(16, 16), times=1)
    best = ds.climgen.synthesize(factor=4, model=str(path), seed=0, residual_gain=1.0, adaptive=False)
    again = ds.climgen.synthesize(factor=4, model=str(path), seed=7, residual_gain=1.0, adaptive=False)
    assert np.array_equal(best["tas"].values, again["tas"].values)  # the best estimate draws no noise
    members = ds.climgen.synthesize(factor=4, model=str(path), seed=0, members=3, residual_gain=1.0, adaptive=False)
    values = members["tas"].values
    assert values.shape[0] == 3 and not np.array_equal(values[0], values[1])
    repeat = ds.climgen.synthesize(factor=4, model=str(path), seed=0, members=3, residual_gain=1.0, adaptive=False)
    assert np.array_equal(values, repeat["tas"].values)
    fewer = ds.climgen.synthesize(factor=4, model=str(path), seed=0, members=2, residual_gain=1.0, adaptive=False)
    assert np.array_equal(values[:2], fewer["tas"].values)  # member m is the same whatever the count


def test_stated_macs_are_the_convolutions_that_ran():
    from climgen.depth.compute import counting_macs, macs_per_cell

    model, coarse = _model(), _coarse(12)[..., :10]
    covariate = torch.randn(1, 1, 24, 20, generator=torch.Generator().manual_seed(1))
    for noise in (None, [torch.zeros(1, 1, 24, 20)]):
        for covariates in (None, covariate):  # without covariates the head takes 2 channels
            with counting_macs(model) as counted, torch.no_grad():
                model(coarse, covariates, stages=1, noise=noise)
            assert counted[0] == model.stage_macs(12, 10, sample=noise is not None, covariates=covariates is not None)
    assert model.stage_macs(12, 10, covariates=False) < model.stage_macs(12, 10)
    interior = 9 * (model.stage_network.head.in_channels * 8 + 2 * 2 * 8 * 8 + 8 * 4)
    assert interior < macs_per_cell(model) < 1.05 * interior  # margins are a few percent of a large window


def test_default_keeps_its_detail_whole_and_members_take_every_stage(hsurf_coarse):
    import json

    from climgen import pipeline

    result = pipeline.synthesize(hsurf_coarse, factor=2, tile_size=8)
    gains = json.loads(result.attrs["climgen_provenance"])["residual_gains"]
    assert gains["HSURF"]["gain"] == 1.0 and gains["HSURF"]["note"].startswith("not tested")
    members = pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, members=3))
    assert members.depth_policy["policy"] == "uniform" and (members.depth == 2).all()
    budget = pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, members=3, budget=0.3))
    assert budget.depth_policy["policy"] == "budget"  # a depth the user asks for is kept


def test_members_are_counted_with_their_sample_head(hsurf_coarse):
    """Each member runs the sample head as well, so it costs more than the best estimate."""
    from climgen import pipeline

    best = pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, adaptive=False))
    members = pipeline.plan(hsurf_coarse, pipeline.make_config(factor=4, members=3))
    assert not best.draws_members and members.draws_members
    per_field = best.provenance(1, 0.0)["compute"]["macs"]
    per_member = members.provenance(1, 0.0)["compute"]["macs"]
    assert per_member > per_field


@torch.no_grad()
def test_drawn_detail_is_scaled_by_the_chain_length_and_saved_with_the_model(tmp_path):
    """``sample_scale[k - 1]`` scales every stage's drawn detail in a chain of k stages: 0 gives
    the best estimate, and a smaller scale a smaller spread; the scales travel in the JSON."""
    from dataclasses import replace

    model, coarse = _model(), _coarse()
    best = model(coarse, stages=2)[-1]
    spreads = []
    for scales in ((1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 1.0, 1.0), (1.0, 0.0, 1.0, 1.0)):
        model.config = replace(model.config, sample_scale=scales)
        member = model(coarse, stages=2, generator=torch.Generator().manual_seed(3))[-1]
        spreads.append(float((member - best).pow(2).mean().sqrt()))
        one_stage = model(coarse, stages=1, generator=torch.Generator().manual_seed(3))[-1]
        assert not torch.equal(one_stage, model(coarse, stages=1)[-1])  # a one-stage chain keeps scale 1
    assert spreads[0] > spreads[1] > spreads[2] == 0.0
    model.config = replace(model.config, sample_scale=(1.0, 0.5, 0.25, 0.25))
    checkpoint = load_checkpoint(save_checkpoint(model, tmp_path / "scaled", "hierarchical", {"name": "scaled"}))
    assert checkpoint.module.config.sample_scale == (1.0, 0.5, 0.25, 0.25)


def test_members_record_the_drawn_detail_scale(hsurf_coarse):
    import json

    members = hsurf_coarse.isel(rlat=slice(0, 16), rlon=slice(0, 16)).climgen.synthesize(factor=4, members=2)
    provenance = json.loads(members.attrs["climgen_provenance"])
    assert provenance["sample_scale"] == list(load_checkpoint("default").module.config.sample_scale)
    assert provenance["sample_scale"][1] < 1.0  # x4 members are calibrated with less than the raw draw
