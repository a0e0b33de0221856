"""The generator as a plain nn.Module, and safetensors + JSON checkpoints."""

import json
import shutil

import pytest
import torch

from climgen.errors import ModelError
from climgen.models.blocks import MultiBranchBlock, local_mean
from climgen.models.checkpoint import default_checkpoint_path, file_sha256, load_checkpoint, save_checkpoint
from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig, coarsen

SMALL = GeneratorConfig(channels=8, blocks=1)


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_every_stage_doubles_and_stays_coarse_consistent(stages):
    torch.manual_seed(0)
    model = AdaptiveMultiScaleGenerator(SMALL)
    torch.nn.init.normal_(model.tail.weight, std=0.1)  # non-trivial residuals
    coarse = torch.randn(2, 1, 5, 7) * 10 + 280
    outputs = model(coarse, stages=stages, generator=torch.Generator().manual_seed(1))
    assert [o.shape[-2:] for o in outputs] == [(5 * 2**s, 7 * 2**s) for s in range(1, stages + 1)]
    for level, output in enumerate(outputs, start=1):
        torch.testing.assert_close(coarsen(output, 2**level), coarse, rtol=0, atol=1e-3)


def test_same_noise_gives_identical_output_and_other_noise_differs():
    torch.manual_seed(0)
    model = AdaptiveMultiScaleGenerator(SMALL).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    coarse = torch.randn(1, 1, 8, 8)
    first = model(coarse, stages=2, generator=torch.Generator().manual_seed(7))[-1]
    again = model(coarse, stages=2, generator=torch.Generator().manual_seed(7))[-1]
    other = model(coarse, stages=2, generator=torch.Generator().manual_seed(8))[-1]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_no_covariates_is_the_same_as_missing_ones():
    # without covariates the stage skips normalising empty slots: same numbers as all-missing
    # covariates, and one covariate fills the first slot only
    model = load_checkpoint().module
    coarse = 280 + torch.randn(2, 1, 12, 10, generator=torch.Generator().manual_seed(3)).cumsum(-1)
    noise = [torch.randn(2, 1, 24 * 2**s, 20 * 2**s, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    missing = torch.full((2, 2, 48, 40), float("nan"))
    with torch.inference_mode():
        without = model(coarse, stages=2, noise=noise)
        with_missing = model(coarse, missing, stages=2, noise=noise)
        one = model(coarse, torch.linspace(0, 1, 40).expand(2, 1, 48, 40), stages=2, noise=noise)
    for a, b in zip(without, with_missing, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(without[-1], one[-1])


def test_output_scales_with_the_input():
    """Local normalisation makes refinement affine-equivariant (K vs degC, m vs km)."""
    torch.manual_seed(0)
    model = AdaptiveMultiScaleGenerator(SMALL).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    coarse = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    model = model.double()
    base = model(coarse, stages=1, generator=torch.Generator().manual_seed(3))[-1]
    shifted = model(coarse * 1000 + 273.15, stages=1, generator=torch.Generator().manual_seed(3))[-1]
    torch.testing.assert_close(shifted, base * 1000 + 273.15, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("magnitude", [1e-15, 1e-10, 1e18, 1e25])
def test_extreme_magnitudes_refine_like_ordinary_ones(magnitude):
    """float32 refinement of aerosol-like 1e-10 fields or 1e18 column densities: the same
    detail as at ordinary magnitude, scaled (squares overflowed, an absolute floor damped)."""
    model = load_checkpoint("default").module.eval()
    coarse = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(1)) + 3.0
    noise = [torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(size)) for size in (24, 48)]
    with torch.inference_mode():
        base = model(coarse, stages=2, noise=noise)
        scaled = model(coarse * magnitude, stages=2, noise=noise)
    for low, high in zip(base, scaled, strict=True):
        assert torch.isfinite(high).all()
        detail = low - torch.nn.functional.interpolate(coarse, size=low.shape[-2:], mode="nearest")
        assert (high / magnitude - low).abs().max() < 1e-5 * detail.abs().max()


def test_ordinary_magnitudes_are_refined_unscaled():
    from climgen.models.generator import magnitude_scale

    fields = torch.tensor([1e-5, 300.0, 1e11, 1e-9, 1e14, 0.0]).view(6, 1, 1, 1) * torch.ones(6, 1, 4, 4)
    assert magnitude_scale(fields).flatten().tolist() == [1.0, 1.0, 1.0, 2.0**30, 2.0**-46, 1.0]


def _reference_block(block: MultiBranchBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's documented computation written plainly: a softmax over branches per channel
    and pixel weights the branch features; context, spatial gate, projection, skip."""
    features = torch.stack([block.activation(branch(x)) for branch in block.branches], 1)
    pooled = local_mean(features.sum(1), block.context_window)
    logits = block.branch_attention(pooled).unflatten(1, (len(block.branches), -1))
    fused = (torch.softmax(logits, dim=1) * features).sum(1) + block.context(pooled)
    gate = torch.sigmoid(block.spatial_attention(torch.cat([fused.mean(1, keepdim=True), fused.amax(1, keepdim=True)], 1)))
    return x + block.project(fused * gate)


@pytest.mark.parametrize("kernel_sizes", [(3,), (3, 5), (3, 5, 7)])
def test_block_fuses_branches_by_a_softmax(kernel_sizes):
    torch.manual_seed(0)
    block = MultiBranchBlock(8, kernel_sizes, context=5)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.normal_(std=0.4)  # attention far from uniform, so the weights matter
    x = torch.randn(2, 8, 20, 20, requires_grad=True)
    output = block(x)
    torch.testing.assert_close(output, _reference_block(block, x), rtol=1e-5, atol=1e-5)
    output.square().sum().backward()  # the in-place steps keep what autograd needs
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_checkpoint_round_trip(tmp_path):
    model = AdaptiveMultiScaleGenerator(SMALL)
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    path = save_checkpoint(model, tmp_path / "tiny", "amsgm", {"name": "tiny"})
    loaded = load_checkpoint(path)
    assert loaded.name == "tiny" and loaded.sha256 == file_sha256(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.module.state_dict()[name])
    assert load_checkpoint(path.with_suffix(".json")).sha256 == loaded.sha256


def test_default_checkpoint_is_trained_and_described():
    checkpoint = load_checkpoint("default")
    document = json.loads(default_checkpoint_path().with_suffix(".json").read_text())
    assert document["architecture"] == "hierarchical" and document["weights_sha256"] == checkpoint.sha256
    assert document["validation"], "the shipped model records its validation history"
    network = checkpoint.module.stage_network
    for head in (network.mean_head, network.sample_head[-1]):
        assert head.weight.abs().sum() > 0, "an untrained head is zero (plain bicubic, no spread)"
    assert any("relief" in line for line in document["training_data"]["corpus"])


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl"])
def test_pickle_checkpoints_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="pickle"):
        load_checkpoint(path)


def test_missing_checkpoint_and_missing_json(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
    path = save_checkpoint(AdaptiveMultiScaleGenerator(SMALL), tmp_path / "lonely", "amsgm")
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="config not found"):
        load_checkpoint(path)


def test_shape_mismatch_and_bad_config_are_caught(tmp_path):
    path = save_checkpoint(AdaptiveMultiScaleGenerator(SMALL), tmp_path / "m", "amsgm")
    document = json.loads(path.with_suffix(".json").read_text())
    document["config"]["channels"] = 16
    path.with_suffix(".json").write_text(json.dumps(document))
    with pytest.raises(ModelError, match="do not match the config"):
        load_checkpoint(path)
    document["config"]["unknown_option"] = 1
    path.with_suffix(".json").write_text(json.dumps(document))
    with pytest.raises(ModelError, match="invalid generator config"):
        load_checkpoint(path)


def test_replaced_weights_fail_the_checksum(tmp_path):
    first = save_checkpoint(AdaptiveMultiScaleGenerator(SMALL), tmp_path / "a", "amsgm")
    second_model = AdaptiveMultiScaleGenerator(SMALL)
    torch.nn.init.normal_(second_model.tail.weight)
    second = save_checkpoint(second_model, tmp_path / "b", "amsgm")
    shutil.copy(second, first)
    with pytest.raises(ModelError, match="checksum"):
        load_checkpoint(first)


def test_a_config_edited_beside_the_same_weights_is_another_model_in_the_provenance(tmp_path):
    """The JSON's config decides the outputs as the weights do: an edited one is loaded (not a
    cached copy of the first) and named by its own hash, in the provenance and the job."""
    from climgen.testing import make_dataset

    weights = default_checkpoint_path()
    shutil.copy(weights, tmp_path / "mine.safetensors")
    shutil.copy(weights.with_suffix(".json"), tmp_path / "mine.json")
    coarse = make_dataset("latlon", shape=(16, 16), times=1)
    first = coarse.climgen.synthesize(factor=2, model=str(tmp_path / "mine"), members=2, seed=1)
    document = json.loads((tmp_path / "mine.json").read_text())
    document["config"]["sample_scale"] = [2 * scale for scale in document["config"]["sample_scale"]]
    (tmp_path / "mine.json").write_text(json.dumps(document))
    edited = load_checkpoint(tmp_path / "mine")
    assert list(edited.module.config.sample_scale) == document["config"]["sample_scale"]
    second = coarse.climgen.synthesize(factor=2, model=str(tmp_path / "mine"), members=2, seed=1)
    before, after = (json.loads(result.attrs["climgen_provenance"]) for result in (first, second))
    assert before["model_sha256"] == after["model_sha256"]  # the same weights
    assert before["model_config_sha256"] != after["model_config_sha256"]
    assert not (first["tas"].values == second["tas"].values).all()


def test_no_pickle_loading_anywhere_in_the_package():
    from pathlib import Path

    import climgen

    for source in Path(climgen.__file__).parent.rglob("*.py"):
        text = source.read_text()
        assert "torch.load(" not in text or "weights_only=True" in text, source
        assert "import pickle" not in text, source


def test_a_checkpoint_stem_with_dots_is_saved_and_loaded_by_that_name(tmp_path):
    first = save_checkpoint(AdaptiveMultiScaleGenerator(SMALL), tmp_path / "amsgm-lr-0.02", "amsgm")
    second = save_checkpoint(AdaptiveMultiScaleGenerator(SMALL), tmp_path / "amsgm-lr-0.0", "amsgm")
    assert (first.name, second.name) == ("amsgm-lr-0.02.safetensors", "amsgm-lr-0.0.safetensors")  # not both amsgm-lr-0
    assert load_checkpoint(tmp_path / "amsgm-lr-0.02").sha256 == file_sha256(first)
    assert (tmp_path / "amsgm-lr-0.0.json").is_file()


def test_a_retired_model_says_what_replaced_it():
    from climgen.errors import ModelError

    with pytest.raises(ModelError, match="amsgm-ensemble.*retired.*--members"):
        load_checkpoint("amsgm-ensemble")
