"""A tiny end-to-end training run on CPU, through the real recipe and CLI code."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from climgen.models.checkpoint import load_checkpoint
from climgen.testing import make_dataset
from climgen.training.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_multibranch_recipes_chain_into_the_shipped_model():
    base = load_recipe(ROOT / "recipes" / "train-multibranch.yaml")
    middle = load_recipe(ROOT / "recipes" / "train-multibranch-continue.yaml")
    final = load_recipe(ROOT / "recipes" / "train-multibranch-covariates.yaml")
    assert base.data.real_fields and base.data.validation_fields
    assert middle.data == base.data
    assert final.data.real_fields == base.data.real_fields and final.data.large_scale_covariate_share > 0
    # each phase starts from what the one before writes; the last writes the shipped model
    assert middle.resolve(middle.init_from) == base.resolve(base.output) + ".safetensors"
    assert final.resolve(final.init_from) == middle.resolve(middle.output) + ".safetensors"
    assert final.resolve(final.output).endswith("climgen/models/weights/amsgm-multibranch")
    shipped = load_checkpoint("amsgm-multibranch").metadata  # trained when it was the default
    assert shipped["recipe"]["init_from"].endswith("phase2.safetensors") and shipped["recipe"]["seed"] == final.seed
    assert shipped["recipe"]["data"] == json.loads(final.data.model_dump_json(exclude={"corpus"}))
    assert "large scales only" in shipped["training_data"]["generated"]


@pytest.mark.parametrize(("recipe_file", "model"), [("train-default.yaml", "default"), ("train-fast.yaml", "amsgm-fast")])
def test_the_recipes_make_the_shipped_hierarchical_models(recipe_file, model):
    recipe = load_recipe(ROOT / "recipes" / recipe_file)
    assert recipe.model.architecture == "hierarchical" and recipe.data.corpus is not None
    checkpoint = load_checkpoint(model)
    assert recipe.resolve(recipe.output).endswith(f"climgen/models/weights/{checkpoint.name}")
    shipped = checkpoint.metadata["recipe"]
    for section in ("seed", "model", "data", "pretrain"):
        assert shipped[section] == json.loads(recipe.model_dump_json())[section], section


def test_large_scale_covariate_relations_leave_the_fine_detail_alone():
    # a target that follows a smoothed covariate must not carry the covariate's own fine detail
    from climgen.training.data import SampleGenerator

    def detail(values):  # what 2 x 2 block means cannot hold: the detail of one x2 stage
        blocks = values.reshape(32, 2, 32, 2).mean(axis=(1, 3))
        return values - np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)

    def mean_detail_correlation(share: float) -> float:
        sampler, rng = SampleGenerator(64, 1, None, 0.0, share), np.random.default_rng(3)
        correlations = []
        while len(correlations) < 40:
            target, covariates, mask = sampler(rng)
            if mask[0].any():
                correlations.append(abs(np.corrcoef(detail(target).ravel(), detail(covariates[0]).ravel())[0, 1]))
        return float(np.mean(correlations))

    copied, smoothed = mean_detail_correlation(0.0), mean_detail_correlation(1.0)
    assert smoothed < 0.5 * copied


def test_tiny_training_run_produces_a_loadable_model(tmp_path, climgen_cli):
    recipe = _recipe_document(tmp_path, pretrain={"steps": 4, "batch_size": 2, "validate_every": 2})
    recipe["data"]["validation_fields"] = [{"path": "terrain.nc", "variable": "orog", "sel": {"rlon": [30.0, None]}}]
    recipe["data"]["real_fields"][0]["sel"] = {"rlon": [None, 30.0]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    result = climgen_cli("train", tmp_path / "tiny.yaml")
    assert result.returncode == 0, result.stderr
    assert "step=4" in result.stdout and "ratio=" in result.stdout
    checkpoint = load_checkpoint(tmp_path / "tiny-model.safetensors")
    assert checkpoint.metadata["trained_on_device"] == "cpu"
    assert [entry["step"] for entry in checkpoint.metadata["validation"]] == [2, 4]
    coarse = make_dataset("latlon", shape=(8, 8))
    out = coarse.climgen.synthesize(factor=2, model=str(tmp_path / "tiny-model.safetensors"))
    assert np.isfinite(out["tas"]).all()


def test_bad_recipe_names_the_field(tmp_path):
    import pytest

    from climgen.errors import ConfigError

    (tmp_path / "bad.yaml").write_text("name: x\noutput: y\npretrain: {steps: -1}\n")
    with pytest.raises(ConfigError, match="pretrain.steps"):
        load_recipe(tmp_path / "bad.yaml")


def _recipe_document(tmp_path, **overrides) -> dict:
    """A tiny recipe on a generated rotated-pole terrain written to ``tmp_path``."""
    terrain = make_dataset("rotated", shape=(80, 80), times=3, name="orog")
    terrain.to_netcdf(tmp_path / "terrain.nc")
    return {
        "name": "tiny",
        "seed": 4,
        "device": "cpu",
        "output": "tiny-model",
        "model": {"channels": 8, "blocks": 1},
        "data": {"crop_size": 32, "real_fraction": 0.5, "real_fields": [{"path": "terrain.nc", "variable": "orog"}]},
        "pretrain": {"steps": 6, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2},
    } | overrides


def _recipe(tmp_path, **overrides):
    from climgen.training.recipe import TrainRecipe

    return TrainRecipe(**_recipe_document(tmp_path, **overrides), base_dir=tmp_path)


class _Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    import safetensors.torch
    import torch

    from climgen.training.pretrain import pretrain
    from climgen.training.state import interruption_note, state_paths

    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference = load_checkpoint(pretrain(_recipe(reference_dir), log=lambda line: None))

    def stop_at_step_4(line):
        if line.startswith("step=4"):
            raise _Interrupt

    interrupted = _recipe(tmp_path)
    import pytest

    with pytest.raises(_Interrupt):
        pretrain(interrupted, log=stop_at_step_4)
    weights, _ = state_paths(interrupted.resolve(interrupted.output))
    assert all(path.exists() for path in state_paths(interrupted.resolve(interrupted.output)))
    # the noise stream is a CPU generator's whatever the device: a state saved on a GPU resumes anywhere
    saved_noise = safetensors.torch.load_file(weights)["noise_generator"]
    assert saved_noise.numel() == torch.Generator().get_state().numel()
    note = interruption_note(interrupted.resolve(interrupted.output), 6, 2)
    assert note.startswith("interrupted: step 2 of 6 is saved in ")
    assert note.endswith("rerun the same command to resume from there")
    assert "nothing to resume" in interruption_note(tmp_path / "other-model", 6, 2)
    adversarial = interruption_note(interrupted.resolve(interrupted.output), 6, 2, adversarial_steps=40)
    assert adversarial.endswith("the adversarial stage (40 steps) saves no state and runs again from its start")
    lines = []
    resumed = load_checkpoint(pretrain(interrupted, log=lines.append))
    assert lines[0].startswith("resuming from step 2 of 6 (") and lines[0].endswith("tiny-model.train-state.json)")
    for name, tensor in reference.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name
    assert not any(path.exists() for path in state_paths(interrupted.resolve(interrupted.output)))


def test_a_run_resumed_with_other_threads_says_its_weights_will_differ(tmp_path):
    """The number of torch threads changes the order of the CPU's sums: a run interrupted with
    two threads and resumed with one gave weights matching neither uninterrupted run, in
    silence."""
    import torch

    from climgen.errors import ClimgenWarning
    from climgen.training.pretrain import pretrain

    def stop_at_step_4(line):
        if line.startswith("step=4"):
            raise _Interrupt

    threads = torch.get_num_threads()
    try:
        with pytest.raises(_Interrupt):
            pretrain(_recipe(tmp_path, threads=2), log=stop_at_step_4)
        with pytest.warns(ClimgenWarning, match="resuming with other arithmetic .*threads 2 -> 1"):
            pretrain(_recipe(tmp_path, threads=1), log=lambda line: None)
    finally:
        torch.set_num_threads(threads)


def test_fine_tuning_starts_from_a_checkpoint(tmp_path):
    import torch

    from climgen.training.recipe import TrainRecipe
    from climgen.training.run import train

    document = _recipe_document(
        tmp_path, init_from="default", pretrain={"steps": 2, "batch_size": 2, "validate_every": 2, "learning_rate": 1e-4}
    )
    del document["model"]  # a fine-tune keeps its init_from's architecture
    recipe = TrainRecipe(**document, base_dir=tmp_path)
    tuned = load_checkpoint(train(recipe, log=lambda line: None))
    default = load_checkpoint("default")
    assert tuned.module.config == default.module.config
    assert tuned.metadata["initialised_from"].startswith(default.name)
    difference = sum(
        (a - b).abs().sum() for a, b in zip(tuned.module.state_dict().values(), default.module.state_dict().values(), strict=True)
    )
    assert 0 < float(difference) < float(sum(t.abs().sum() for t in default.module.state_dict().values()))
    assert isinstance(torch.get_num_threads(), int)


def test_a_fine_tune_validates_with_the_covariates_of_its_validation_fields(tmp_path):
    """A field that follows the terrain, validated with the terrain as it trained with it: the
    validation windows carry their covariate, and the scores are those with it."""
    from climgen.training.hierarchical import validate, validation_windows
    from climgen.training.recipe import TrainRecipe

    terrain = make_dataset("latlon", shape=(64, 64), seed=4)["tas"] - 280.0
    field = (290.0 - 0.0065 * 400 * terrain).rename("tas").assign_attrs(units="K")
    lapse = field.to_dataset()
    lapse["orog"] = (400 * terrain).assign_attrs(units="m")
    lapse.to_netcdf(tmp_path / "lapse.nc")
    source = {"path": "lapse.nc", "variable": "tas", "covariate_path": "lapse.nc", "covariate_variable": "orog"}
    data = {"crop_size": 32, "real_fields": [source], "validation_fields": [source]}
    document = _recipe_document(tmp_path, init_from="default", data=data)
    del document["model"]
    recipe = TrainRecipe(**document, base_dir=tmp_path)
    windows = validation_windows(recipe)
    assert windows and all(covariate is not None and covariate.shape == window.shape for _, window, covariate in windows)
    model = load_checkpoint("default").module
    with_terrain = validate(model, windows, "cpu")
    without = validate(model, [(group, window, None) for group, window, _ in windows], "cpu")
    assert with_terrain["ratio"] < without["ratio"]


def test_bf16_precision_runs_the_model_under_autocast_and_is_recorded(tmp_path):
    import torch

    from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig
    from climgen.training.common import autocast
    from climgen.training.pretrain import pretrain

    # the context the training loops run the generator in: bf16 convolutions only when asked
    network = AdaptiveMultiScaleGenerator(GeneratorConfig(channels=8, blocks=1)).head
    inputs = torch.randn(1, network.in_channels, 8, 8)
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        with autocast(torch.device("cpu"), precision):
            assert network(inputs).dtype == dtype
    weights = {}
    for precision in ("float32", "bfloat16"):
        folder = tmp_path / precision
        folder.mkdir()
        checkpoint = load_checkpoint(pretrain(_recipe(folder, precision=precision), log=lambda line: None))
        assert checkpoint.metadata["recipe"]["precision"] == precision
        weights[precision] = checkpoint.module.state_dict()
        assert all(torch.isfinite(tensor).all() for tensor in weights[precision].values())
    # same seed, same data: only the arithmetic differs, and it must show in the weights
    assert any(not torch.equal(weights["float32"][name], weights["bfloat16"][name]) for name in weights["float32"])


def test_every_time_step_is_a_training_target(tmp_path):
    from climgen.errors import InputError
    from climgen.training.data import load_real_pool

    data = make_dataset("latlon", shape=(40, 40), times=5)
    data["tas"][1, 0, 0] = np.nan  # one slice with a gap is skipped
    data.to_netcdf(tmp_path / "series.nc")
    pool = load_real_pool([{"path": str(tmp_path / "series.nc"), "variable": "tas"}], crop_size=32)
    assert len(pool.targets) == 4 and all(t.shape == (40, 40) for t in pool.targets)
    import pytest

    with pytest.raises(InputError, match=r"is 40 x 40 cells, smaller than a crop \(crop_size 64\)"):
        load_real_pool([{"path": str(tmp_path / "series.nc"), "variable": "tas"}], crop_size=64)
    # a misspelt variable or selection names what the file has (they were KeyErrors)
    with pytest.raises(InputError, match=r"no variable 'orog'; it has \['tas'\]"):
        load_real_pool([{"path": str(tmp_path / "series.nc"), "variable": "orog"}], crop_size=32)
    with pytest.raises(InputError, match=r"sel names \['latt'\].*it has \['lat', 'lon', 'time'\]"):
        load_real_pool([{"path": str(tmp_path / "series.nc"), "variable": "tas", "sel": {"latt": [0, 5]}}], crop_size=32)


def test_time_steps_are_selected_by_date_in_the_file_s_calendar(tmp_path):
    """A holdout by date (the last months of a series), in the data's own calendar; YAML's
    unquoted dates read as such; numbers for a time, or dates for a latitude, are refused."""
    from climgen.errors import InputError
    from climgen.training.data import load_real_pool
    from climgen.training.recipe import FieldSource

    make_dataset("latlon", shape=(40, 40), times=5).to_netcdf(tmp_path / "series.nc")  # noleap, mid-month
    source = {"path": str(tmp_path / "series.nc"), "variable": "tas"}
    field = FieldSource.model_validate(yaml.safe_load("path: x\nvariable: tas\nsel: {time: [2000-03-01, 2000-05-31]}"))
    assert field.sel == {"time": ("2000-03-01", "2000-05-31")}
    pool = load_real_pool([source | {"sel": {"time": ["2000-03", None]}}], crop_size=32)
    assert len(pool.targets) == 3  # March, April and May
    # with a static covariate (elevation), the time selection is the field's alone
    make_dataset("latlon", shape=(40, 40), name="orog").to_netcdf(tmp_path / "orog.nc")
    guided = source | {"covariate_path": str(tmp_path / "orog.nc"), "covariate_variable": "orog"}
    pool = load_real_pool([guided | {"sel": {"time": ["2000-03", None], "lat": [-5, 10]}}], crop_size=8)
    assert len(pool.targets) == 3 and pool.covariates[0].shape == pool.targets[0].shape
    with pytest.raises(InputError, match="whose time takes dates such as '2005-01-01'"):
        load_real_pool([source | {"sel": {"time": [0, 60]}}], crop_size=32)
    with pytest.raises(InputError, match="whose lat takes numbers in its units"):
        load_real_pool([source | {"sel": {"lat": ["2000-01", None]}}], crop_size=32)
    with pytest.raises(InputError, match="selects no cells of .*whose time runs from 2000-01-16"):
        load_real_pool([source | {"sel": {"time": ["2001-01-01", None]}}], crop_size=32)


def test_shipped_training_recipes_validate():
    paths = [path for path in sorted((ROOT / "recipes").glob("*.yaml")) if not path.name.startswith("downscale-")]
    assert len(paths) >= 2
    from climgen.models.checkpoint import SHIPPED
    from climgen.training.run import architecture, check_sections

    for path in paths:
        recipe = load_recipe(path)
        assert recipe.name and recipe.output, path
        if recipe.baseline is not None:
            continue
        # the sections a run checks before it trains (two shipped recipes failed them): an
        # init_from that an earlier recipe writes (build/) trains the multi-branch generator
        startable = recipe.init_from is None or recipe.init_from in SHIPPED or Path(recipe.resolve(recipe.init_from)).exists()
        check_sections(recipe, architecture(recipe) if startable else "amsgm")


def test_training_fields_and_test_fixtures_come_from_one_generator():
    """One Gaussian random field generator: the same seed and exponent give the same bits in
    climgen.testing and in the training data."""
    from climgen.random_fields import gaussian_random_field
    from climgen.testing import rough_field

    np.testing.assert_array_equal(
        rough_field((32, 48), seed=4, smoothness=2.5), gaussian_random_field(np.random.default_rng(4), (32, 48), 2.5)
    )
    import climgen.training.data as data

    assert not hasattr(data, "fractal_field")
    field = rough_field((64, 64), seed=1, smoothness=3.0)
    assert abs(field.mean()) < 1e-12 and abs(field.std() - 1) < 1e-9


def test_the_ssim_training_reports_is_the_ssim_a_user_measures():
    """Training validation and climgen evaluate share one SSIM (climgen.metrics.ssim: 7-cell
    Gaussian window, the truth's range); training used torchmetrics' 11-cell one."""
    import torch

    from climgen import metrics
    from climgen.models.generator import bicubic_upsample, coarsen
    from climgen.testing import rough_field
    from climgen.training.pretrain import validate

    model = load_checkpoint("default").module
    windows = [100 * rough_field((64, 64), seed=seed) for seed in range(3)]
    scores = validate(model, windows, torch.device("cpu"))
    truth = torch.tensor(np.stack(windows), dtype=torch.float32)[:, None]
    bicubic = bicubic_upsample(coarsen(truth, 4), 4)[:, 0].double().numpy()
    expected = np.mean([metrics.ssim(b, t) for b, t in zip(bicubic, truth[:, 0].double().numpy(), strict=True)])
    assert scores["ssim_bicubic"] == pytest.approx(expected, rel=1e-9)
    assert 0 < scores["ssim"] <= 1


def test_a_section_the_loop_would_ignore_is_an_error():
    from climgen.errors import ConfigError
    from climgen.training.recipe import load_recipe
    from climgen.training.run import check_sections

    recipe = load_recipe(ROOT / "recipes" / "train-default.yaml")
    with pytest.raises(ConfigError, match="data.corpus"):
        check_sections(recipe, "amsgm")
    adversarial = recipe.model_copy(update={"adversarial": recipe.adversarial.model_copy(update={"steps": 10})})
    with pytest.raises(ConfigError, match="adversarial.steps"):
        check_sections(adversarial, "hierarchical")
    check_sections(recipe, "hierarchical")


def test_a_fine_tune_that_trains_the_x8_chain_is_validated_at_x8_too(tmp_path):
    from climgen.training.recipe import TrainRecipe
    from climgen.training.run import train

    source = {"path": "terrain.nc", "variable": "orog"}
    pretrain = {"steps": 2, "batch_size": 2, "validate_every": 2, "learning_rate": 1e-4, "max_stages": 3}
    document = _recipe_document(tmp_path, init_from="default", pretrain=pretrain)
    document["data"] = document["data"] | {"crop_size": 64, "validation_fields": [source]}
    del document["model"]
    tuned = load_checkpoint(train(TrainRecipe(**document, base_dir=tmp_path), log=lambda line: None))
    (record,) = tuned.metadata["validation"]
    assert 0 < record["ratio_x8"] < 2 and record["factor"] == 4


def test_a_baseline_is_no_generator_to_fine_tune(tmp_path):
    from climgen.errors import ConfigError
    from climgen.training.recipe import TrainRecipe
    from climgen.training.run import train

    document = _recipe_document(tmp_path, init_from="cvae-x4")
    del document["model"]
    with pytest.raises(ConfigError, match="'cvae-x4' is a cvae baseline: a fine-tune starts from a generator"):
        train(TrainRecipe(**document, base_dir=tmp_path), log=lambda line: None)
