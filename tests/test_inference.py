"""Inference paths: batched tile windows, bf16 precision, float32 normalisation, devices."""

import numpy as np
import pytest
import torch

from climgen._torch import native_bf16, resolve_precision
from climgen.errors import ClimgenWarning, ConfigError
from climgen.models.blocks import local_mean
from climgen.models.checkpoint import load_checkpoint
from climgen.models.generator import _local_standardise, local_standardise
from climgen.pipeline import make_config, plan, synthesize
from climgen.refine import TileRefiner, model_on_device, refine_domain, resolve_device
from climgen.testing import make_dataset, rough_field
from climgen.tiling import TileLayout


def _domain(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Two 40 x 44 temperature-like fields and a depth map mixing 0, 1 and 2."""
    fields = np.stack([285 + 6 * rough_field((40, 44), seed + i, 2.0) for i in range(2)])
    layout = TileLayout((40, 44), 16, 4)
    depth = (np.arange(layout.grid_shape[0] * layout.grid_shape[1]) % 3).reshape(layout.grid_shape)
    return fields, depth


def _refine(batch_size: int, precision: str = "float32") -> np.ndarray:
    fields, depth = _domain()
    model = load_checkpoint().module
    refiner = TileRefiner(model, 4, TileLayout((40, 44), 16, 4), batch_size=batch_size, precision=precision)
    return refiner.refine(fields, depth, None, [(0, "tas", i, 0) for i in range(2)])


@pytest.mark.parametrize("channels", [3, 24])  # shifted sums for few channels, convolutions for many
def test_local_mean_matches_pooling_on_cpu(channels):
    field = torch.randn(2, channels, 30, 27, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 50 + 3000
    pooled = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(field, (7, 7, 7, 7), mode="replicate"), 15, stride=1)
    torch.testing.assert_close(local_mean(field.float(), 15).double(), pooled, rtol=0, atol=2e-3)


def test_normalisation_keeps_small_details_on_a_large_offset():
    # 0.05 K of local spread on 290 K: float32 sums of raw values would be off by 1e-4 K, 0.2%
    # of the spread; the normalised field must match a float64 computation far closer
    field = 290 + 0.05 * torch.randn(1, 1, 40, 36, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact, exact_mean, _ = _local_standardise(field.float().double(), 7)  # float64 throughout
    normalised, mean, _ = local_standardise(field.float(), 7)
    torch.testing.assert_close(normalised.double(), exact, rtol=0, atol=2e-4)
    torch.testing.assert_close(mean.double(), exact_mean, rtol=0, atol=3e-5)  # float32 spacing at 290


def test_batched_windows_give_the_per_window_result():
    # windows of one depth and shape from several tiles and fields go through the model
    # together; the result equals one window per call up to float32 rounding
    one, batched = _refine(1), _refine(64)
    fields, _ = _domain()
    detail = np.std(one - np.repeat(np.repeat(fields, 4, 1), 4, 2))
    assert np.max(np.abs(batched - one)) < 1e-4 * detail + 1e-4
    assert not np.isnan(batched).any()


def test_fields_split_over_tasks_give_the_bits_of_fields_refined_alone():
    # one merge group and five fields: on CPU the fields go to parallel tasks, which must not
    # change a bit against refining each field by itself
    fields = np.stack([285 + 6 * rough_field((40, 44), seed, 2.0) for seed in range(5)])
    layout = TileLayout((40, 44), 16, 4, merge=4)
    depth = (np.arange(9) % 3).reshape(layout.grid_shape)
    refiner = TileRefiner(load_checkpoint().module, 4, layout)
    keys = [(0, "tas", i, 0) for i in range(5)]
    together = refine_domain(refiner, fields, depth, None, keys)
    alone = [refine_domain(refiner, fields[i : i + 1], depth, None, keys[i : i + 1])[0] for i in range(5)]
    np.testing.assert_array_equal(together, np.stack(alone))
    assert len({float(np.std(field)) for field in together}) == 5


def test_bf16_changes_the_field_by_a_small_fraction_of_its_detail_and_stays_consistent():
    reference, low = _refine(8), _refine(8, "bfloat16")
    fields, _ = _domain()
    coarse_on_fine = np.repeat(np.repeat(fields, 4, 1), 4, 2)
    detail = np.sqrt(np.mean((reference - coarse_on_fine) ** 2))
    difference = np.sqrt(np.mean((low - reference) ** 2))
    assert 0 < difference < 0.05 * detail
    block_means = low.reshape(2, 40, 4, 44, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(block_means, fields, rtol=0, atol=1e-3)


def test_normalisation_stays_float32_under_bf16_autocast():
    # a 290 K field with 0.05 K local spread: in bf16 the local mean alone would be off by ~1 K
    field = 290 + 0.05 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    exact, _, _ = local_standardise(field, 7)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast, mean, std = local_standardise(field, 7)
    assert under_autocast.dtype == mean.dtype == std.dtype == torch.float32
    torch.testing.assert_close(under_autocast, exact)


def test_devices_and_precisions_are_checked():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for wrong in ("tpu", "gpu", "cuda:", "cuda:x", 1):
        with pytest.raises(ConfigError, match="device must be"):
            resolve_device(wrong)
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:0"):
            with pytest.raises(ConfigError, match="sees no CUDA GPU"):
                resolve_device(device)
    else:
        with pytest.raises(ConfigError, match="GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ConfigError, match="precision must be"):
        TileRefiner(None, 4, TileLayout((8, 8), 8, 0), precision="float16")
    refiner = TileRefiner(None, 4, TileLayout((8, 8), 8, 0))
    # CPU defaults: one window a call; bf16 only where the CPU computes it natively
    assert (refiner.batch_size, refiner.precision) == (1, "bfloat16" if native_bf16("cpu") else "float32")
    assert resolve_precision("auto", "cuda") == "bfloat16" and resolve_precision("float32", "cuda") == "float32"


def test_bf16_refinement_is_within_one_percent_of_the_detail_and_exactly_coarse_consistent():
    """What ``precision="auto"`` gives on a CPU with native bf16 (and anywhere it is asked for):
    the model's convolutions in bf16, its normalisation and projection in float32."""
    fields, _ = _domain()
    single, half = _refine(1, "float32"), _refine(1, "bfloat16")
    detail = np.std(single - np.repeat(np.repeat(fields, 4, 1), 4, 2))
    assert 0 < np.sqrt(np.mean((half - single) ** 2)) < 0.01 * detail
    coarse_means = half.reshape(2, 40, 4, 44, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(coarse_means, fields, rtol=0, atol=1e-3)


def test_model_on_cpu_is_a_channels_last_copy_and_the_shared_checkpoint_stays():
    # the refiner runs a channels-last copy (faster convolutions); the cached checkpoint module
    # other users share keeps its layout, and a copy already in place is not copied again
    shared = load_checkpoint().module
    weight = shared.stage_network.head.weight
    copy = model_on_device(shared, "cpu")
    assert copy is not shared and copy.stage_network.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert shared.stage_network.head.weight is weight and weight.is_contiguous()
    assert model_on_device(copy, "cpu") is copy
    coarse = 280 + torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(4)).cumsum(-1)
    noise = [torch.zeros(1, 1, 32, 32)]
    with torch.inference_mode():
        torch.testing.assert_close(copy(coarse, noise=noise)[-1], shared(coarse, noise=noise)[-1], rtol=0, atol=1e-3)


def test_the_precision_is_an_option_and_the_provenance_names_the_one_used():
    import json

    from climgen.errors import ConfigError
    from climgen.pipeline import synthesize
    from climgen.testing import make_dataset

    ds = make_dataset("latlon", shape=(24, 24), times=1, seed=1)
    out = synthesize(ds, factor=2, precision="float32")
    provenance = json.loads(out.attrs["climgen_provenance"])
    assert (provenance["precision"], provenance["precision_used"], provenance["device"]) == ("float32", "float32", "cpu")
    automatic = json.loads(synthesize(ds, factor=2).attrs["climgen_provenance"])
    assert automatic["precision_used"] == resolve_precision("auto", "cpu")
    with pytest.raises(ConfigError, match="precision"):
        synthesize(ds, factor=2, precision="float16")


class _DeviceFullPast:
    """Fault injection: model calls of more than ``windows`` windows fail as a full device does."""

    def __init__(self, refiner: TileRefiner, windows: int):
        self.run_stages, self.windows, self.calls = refiner.run_stages, windows, []

    def __call__(self, windows, *args, **kwargs):
        self.calls.append(len(windows))
        if len(windows) > self.windows:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return self.run_stages(windows, *args, **kwargs)


def test_a_device_out_of_memory_refines_fewer_windows_a_call_and_loses_nothing():
    fields, depth = _domain()
    refiner = TileRefiner(load_checkpoint().module, 4, TileLayout((40, 44), 16, 4), batch_size=4, precision="float32")
    refiner.run_stages = full = _DeviceFullPast(refiner, windows=1)
    with pytest.warns(ClimgenWarning, match="ran out of memory: 1 window per model call from here on"):
        fine = refiner.refine(fields, depth, None, [(0, "tas", i, 0) for i in range(2)])
    assert refiner.batch_size == 1 and max(full.calls) == 2 and full.calls[-1] == 1
    np.testing.assert_array_equal(fine, _refine(1))  # every window refined, as one at a time

    refiner = TileRefiner(load_checkpoint().module, 4, TileLayout((40, 44), 16, 4), batch_size=1)
    refiner.run_stages = _DeviceFullPast(refiner, windows=0)
    with pytest.raises(ConfigError, match="ran out of memory refining one .* window: use a smaller tile_size"):
        refiner.refine(fields, depth, None, [(0, "tas", i, 0) for i in range(2)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no GPU is seen")
def test_a_gpu_asked_for_where_none_is_seen_is_refused_before_any_work():
    ds = make_dataset(shape=(12, 16), times=1)
    with pytest.raises(ConfigError, match="device 'cuda:1' asked for, but .* sees no CUDA GPU"):
        synthesize(ds, factor=2, device="cuda:1")
    # the plan's self-tests run where the run does: a GPU it was not given is never touched
    job = plan(ds, make_config(factor=2), device="cpu")
    assert job.device == "cpu" and job.refiner().device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a planning machine without a GPU")
def test_a_remote_gpu_cluster_runs_in_the_precision_of_its_gpus_whatever_plans_it():
    """Planned where no GPU is seen, a job for a cluster's GPUs (``--device cuda --scheduler``)
    resolves the precision for them, once, and records the device asked for."""
    from climgen.streaming import StreamOptions, _hardware

    job = plan(make_dataset(shape=(12, 16)), make_config(factor=2))
    remote = StreamOptions(device="cuda", scheduler="tcp://gpu-node:8786")
    assert _hardware(job, remote) == {"device": "cuda", "precision_used": "bfloat16"}
    assert _hardware(job, StreamOptions(device="cpu"))["device"] == "cpu"
