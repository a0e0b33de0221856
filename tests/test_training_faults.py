"""Training as a user meets it when something is off: a diverged run, an interrupted one, a
recipe or a field that cannot be used. Each gives one clear error, and nothing already
written is lost."""

import json
import os

import numpy as np
import pytest
import safetensors.torch
import torch

from climgen.errors import ConfigError, InputError, ModelError, OutputExistsError, TrainingError
from climgen.models.checkpoint import load_checkpoint, save_checkpoint
from climgen.testing import make_dataset
from climgen.training.recipe import TrainRecipe, load_recipe


def _fine_tune(tmp_path, **overrides) -> TrainRecipe:
    """A 4-step fine-tune of the default model on a small generated temperature field."""
    if not (tmp_path / "tas.nc").exists():
        make_dataset("latlon", shape=(48, 64), times=2).to_netcdf(tmp_path / "tas.nc")
    document = {
        "name": "tuned",
        "seed": 5,
        "device": "cpu",
        "output": "tuned",
        "init_from": "default",
        "data": {"crop_size": 32, "real_fraction": 0.8, "real_fields": [{"path": "tas.nc", "variable": "tas"}]},
        "pretrain": {"steps": 4, "batch_size": 2, "validate_every": 2, "checkpoint_every": 2, "learning_rate": 1e-4},
    }
    for key, value in overrides.items():
        document[key] = document[key] | value if isinstance(value, dict) and key in document else value
    return TrainRecipe(**document, base_dir=tmp_path)


def test_a_diverged_run_writes_nothing_and_keeps_the_checkpoint_it_would_replace(tmp_path):
    from climgen.training.run import train
    from climgen.training.state import state_paths

    first = train(_fine_tune(tmp_path), log=lambda line: None)
    before = first.read_bytes(), first.with_suffix(".json").read_bytes()
    # a finished checkpoint is replaced only when asked: outputs refined with it name its hash
    with pytest.raises(OutputExistsError, match=r"tuned.safetensors is a finished checkpoint .* pass --overwrite"):
        train(_fine_tune(tmp_path, seed=8), log=lambda line: None)
    assert (first.read_bytes(), first.with_suffix(".json").read_bytes()) == before
    with pytest.raises(TrainingError, match="diverged"):
        train(_fine_tune(tmp_path, pretrain={"learning_rate": 1e6, "steps": 12}), log=lambda line: None, overwrite=True)
    assert (first.read_bytes(), first.with_suffix(".json").read_bytes()) == before
    # its saved state would diverge again: removed, so the lower learning rate the error asks for runs
    assert not any(path.exists() for path in state_paths(tmp_path / "tuned"))
    # and the writer itself refuses weights that are not finite
    model = load_checkpoint("default").module
    broken = type(model)(model.config)
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(broken.parameters())[0] = float("nan")
    with pytest.raises(TrainingError, match="not finite"):
        save_checkpoint(broken, first, "hierarchical", {"name": "broken"})
    assert first.read_bytes() == before[0]
    assert oct(first.stat().st_mode & 0o777) == oct(first.with_suffix(".json").stat().st_mode & 0o777)  # not 0600
    train(_fine_tune(tmp_path, pretrain={"learning_rate": 1e-5}), log=lambda line: None, overwrite=True)


class _Interrupt(Exception):
    pass


def _stop_at(step: int):
    def log(line):
        if line.startswith(f"step={step} "):
            raise _Interrupt

    return log


def test_an_interrupted_fine_tune_resumes_with_its_history_and_another_recipe_does_not_take_its_state(tmp_path):
    from climgen.training.run import train
    from climgen.training.state import state_paths

    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    whole = load_checkpoint(train(_fine_tune(whole_dir), log=lambda line: None))
    recipe = _fine_tune(tmp_path)
    with pytest.raises(_Interrupt):
        train(recipe, log=_stop_at(4))  # after the state of step 2
    # the output given as an absolute path (as `climgen train --output` gives it) is the same run
    again = recipe.model_copy(update={"output": str(tmp_path / "tuned")})
    other = again.model_copy(update={"seed": 6})
    with pytest.raises(TrainingError, match="another recipe"):
        train(other, log=lambda line: None)
    assert all(path.exists() for path in state_paths(tmp_path / "tuned"))  # not thrown away
    lines = []
    resumed = load_checkpoint(train(again, log=lines.append))
    assert lines[0].startswith("resuming from step 2 of 4")
    for name, tensor in whole.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name
    strip = lambda history: [{k: v for k, v in record.items() if k != "seconds"} for record in history]  # noqa: E731
    assert strip(resumed.metadata["validation"]) == strip(whole.metadata["validation"])
    assert resumed.metadata["validation"][-1]["seconds"] >= resumed.metadata["validation"][0]["seconds"]
    assert "model" not in resumed.metadata["recipe"]  # the architecture is the checkpoint's config


def test_an_unreadable_training_state_is_an_error_that_names_it(tmp_path):
    from climgen.training.run import train
    from climgen.training.state import state_paths

    recipe = _fine_tune(tmp_path)
    with pytest.raises(_Interrupt):
        train(recipe, log=_stop_at(4))
    weights, document = state_paths(tmp_path / "tuned")
    kept = weights.read_bytes()
    # a state whose noise stream is a GPU generator's (16 bytes, as climgen 0.1 saved on CUDA)
    tensors = safetensors.torch.load_file(weights)
    tensors["noise_generator"] = torch.zeros(16, dtype=torch.uint8)
    safetensors.torch.save_file(tensors, weights)
    with pytest.raises(TrainingError, match="noise stream of another device"):
        train(recipe, log=lambda line: None)
    weights.write_bytes(kept)
    document.write_text("{ not json")
    with pytest.raises(TrainingError, match="cannot be read.*remove it"):
        train(recipe, log=lambda line: None)
    assert document.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"crop_size": 34}}, "multiple of 4"),
        ({"seed": -1}, "seed"),
        ({"threads": 0}, "threads"),
        ({"output": "models/"}, "not a folder"),
        ({"model": {"covariate_slots": 0}}, "covariate_slots"),  # an empty slot costs nothing: at least one
        ({"data": {"real_fields": [{"path": "tas.nc", "variable": "tas", "covariate_path": "tas.nc"}]}}, "go together"),
    ],
)
def test_a_recipe_that_cannot_train_is_refused_as_it_is_read(tmp_path, change, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        _fine_tune(tmp_path, **change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"channels": 8}}, "keeps the architecture of init_from"),
        ({"precision": "bfloat16"}, "trains in float32"),
        ({"pretrain": {"steps": 0}}, "nothing to train"),
        (
            {
                "data": {
                    "real_fields": [{"path": "tas.nc", "variable": "tas", "covariate_path": "x.nc", "covariate_variable": "z"}]
                }
            },
            "not found",
        ),
    ],
)
def test_a_recipe_its_loop_would_not_follow_is_refused_before_training(tmp_path, change, message):
    from climgen.training.run import train

    with pytest.raises((ConfigError, InputError), match=message):
        train(_fine_tune(tmp_path, **change), log=lambda line: None)
    assert not (tmp_path / "tuned.safetensors").exists()


def test_a_masked_field_fine_tunes_and_validates_on_its_data(tmp_path):
    """An ocean field with land as NaN (every slice has some) trains the hierarchical
    generator, on crops with most of their cells valid, and is scored on its valid cells."""
    from climgen.training.run import train

    ocean = make_dataset("latlon", shape=(48, 64), times=2, name="tos")
    ocean["tos"][:, :12, :20] = np.nan  # a continent in every month
    ocean.to_netcdf(tmp_path / "tos.nc")
    recipe = _fine_tune(
        tmp_path,
        data={
            "real_fields": [{"path": "tos.nc", "variable": "tos", "sel": {"lon": [None, 30.0]}}],
            "validation_fields": [{"path": "tos.nc", "variable": "tos", "sel": {"lon": [30.5, None]}}],
        },
    )
    tuned = load_checkpoint(train(recipe, log=lambda line: None))
    last = tuned.metadata["validation"][-1]
    assert np.isfinite(last["ratio"]) and np.isfinite(last["loss"])
    sparse = ocean.copy()
    sparse["tos"][:, 20:] = np.nan  # no crop of 32 cells is 70% valid
    sparse.to_netcdf(tmp_path / "sparse.nc")
    with pytest.raises(InputError, match="no crop of 32 cells with 70% of them valid"):
        train(
            _fine_tune(tmp_path, data={"real_fields": [{"path": "sparse.nc", "variable": "tos"}]}),
            log=lambda line: None,
            overwrite=True,
        )


def test_sel_takes_a_range_whichever_way_the_axis_runs_and_says_when_it_selects_nothing(tmp_path):
    from climgen.training.data import load_real_pool

    make_dataset("latlon", shape=(40, 40), descending_y=True, lon_0_360=True).to_netcdf(tmp_path / "f.nc")
    path = str(tmp_path / "f.nc")
    ascending = load_real_pool([{"path": path, "variable": "tas", "sel": {"lat": [-5, 10], "lon": [-150, -130]}}])
    either = load_real_pool([{"path": path, "variable": "tas", "sel": {"lat": [10, -5], "lon": [210, 230]}}])
    assert ascending.targets[0].shape == either.targets[0].shape and ascending.targets[0].shape[0] > 20
    np.testing.assert_array_equal(ascending.targets[0], either.targets[0])
    with pytest.raises(InputError, match="selects no cells.*lat runs from 10 to -10"):
        load_real_pool([{"path": path, "variable": "tas", "sel": {"lat": [40, 60]}}])
    # a regional field east of 0 in -180..180: a range starting west of it keeps its meaning
    make_dataset("latlon", shape=(40, 40)).to_netcdf(tmp_path / "east.nc")
    region = load_real_pool([{"path": str(tmp_path / "east.nc"), "variable": "tas", "sel": {"lon": [-10, 25]}}])
    assert region.targets[0].shape[1] == 20  # longitudes 10 to 25


def test_a_covariate_must_be_one_field_on_the_targets_grid(tmp_path):
    from climgen.training.data import load_real_pool

    make_dataset("latlon", shape=(40, 40)).to_netcdf(tmp_path / "tas.nc")
    make_dataset("latlon", shape=(40, 48), name="orog").to_netcdf(tmp_path / "wide.nc")
    make_dataset("latlon", shape=(40, 40), times=3, name="orog").to_netcdf(tmp_path / "monthly.nc")
    source = {"path": str(tmp_path / "tas.nc"), "variable": "tas", "covariate_variable": "orog"}
    with pytest.raises(InputError, match=r"not on the grid .* \(40 x 40\)"):
        load_real_pool([source | {"covariate_path": str(tmp_path / "wide.nc")}])
    with pytest.raises(InputError, match="one 2-D field"):
        load_real_pool([source | {"covariate_path": str(tmp_path / "monthly.nc")}])


def test_validation_fields_without_a_window_are_an_error_not_a_run_without_scores(tmp_path):
    from climgen.training.run import train

    recipe = _fine_tune(
        tmp_path, data={"validation_fields": [{"path": "tas.nc", "variable": "tas", "sel": {"lon": [38.0, None]}}]}
    )
    with pytest.raises(ConfigError, match="no window of at least 16"):
        train(recipe, log=lambda line: None)


def test_a_checkpoint_with_a_bad_config_or_a_misspelt_name_says_so(tmp_path):
    default = load_checkpoint("default")
    path = save_checkpoint(default.module, tmp_path / "mine", "hierarchical", {"name": "mine"})
    document = json.loads(path.with_suffix(".json").read_text())
    for bad in ("24", None, 0):
        path.with_suffix(".json").write_text(json.dumps(document | {"config": document["config"] | {"channels": bad}}))
        with pytest.raises(ModelError, match="invalid generator config"):
            load_checkpoint(path)
    with pytest.raises(ModelError, match="did you mean the shipped model .default."):
        load_checkpoint("amsgm-defualt")


def test_the_cli_refuses_bad_steps_and_a_broken_recipe_in_one_line(tmp_path, climgen_cli):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: x\noutput: out\npretrain:\n  steps: 3\n   batch_size: 2\n")
    run = climgen_cli("train", str(recipe))
    assert run.returncode != 0 and len(run.stderr.strip().splitlines()) == 1
    assert "not valid YAML at line" in run.stderr
    recipe.write_text("name: x\noutput: out\ndata:\n  crop_size: 62\n")
    run = climgen_cli("train", str(recipe))
    assert run.stderr.strip().endswith("recipe.yaml: data.crop_size 62 must be a multiple of 4 (the crops are coarsened by it)")
    recipe.write_text("name: x\noutput: out\n")
    for steps in ("0", "-3"):
        run = climgen_cli("train", str(recipe), "--steps", steps)
        assert run.returncode != 0 and "--steps must be at least 1" in run.stderr
    assert load_recipe(recipe).pretrain.steps == 1500 and not os.path.exists(tmp_path / "out.safetensors")


def test_a_state_save_cut_between_its_renames_is_finished_or_refused(tmp_path):
    """The tensors and the counters of a training state are renamed into place one after the
    other: a kill between the two is finished on resume (the new counters were written), and
    weights of another step than the counters' are refused, never resumed from."""
    import torch

    from climgen.training.state import load_state, save_state, state_paths

    model = torch.nn.Linear(2, 2)
    optimiser = torch.optim.AdamW(model.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    parts = (model, optimiser, schedule, np.random.default_rng(0), torch.Generator())
    output = tmp_path / "model"
    save_state(output, 2, "recipe", *parts, {"history": []})
    _, counters = state_paths(output)
    step_2 = counters.read_text()
    save_state(output, 4, "recipe", *parts, {"history": []})
    pending = counters.with_name(counters.name + ".tmp")
    pending.write_text(counters.read_text())  # killed after the tensors' rename, before the counters'
    counters.write_text(step_2)
    assert load_state(output, "recipe", *parts)[0] == 4 and not pending.exists()
    counters.write_text(step_2)  # and with no newer counters anywhere
    with pytest.raises(TrainingError, match="says step 2 but its weights are of step 4"):
        load_state(output, "recipe", *parts)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a folder no one can write in (Linux /proc)")
def test_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    """The folder check asked os.access, which says yes to root on file systems that refuse
    the write (a special file system, NFS with root squashed): training then ran to its first
    state save and died with a traceback. The check now writes a file there."""
    from climgen.training.run import train

    with pytest.raises(ConfigError, match="cannot write the checkpoint in /proc/self"):
        train(_fine_tune(tmp_path, output="/proc/self/climgen-model"), log=lambda line: None)
