"""One entry point for every recipe: it trains what the recipe describes."""

from __future__ import annotations

from pathlib import Path

from climgen.training.recipe import TrainRecipe


def architecture(recipe: TrainRecipe) -> str:
    """The architecture a recipe trains: its ``init_from`` checkpoint's, else its model section's."""
    if recipe.init_from is None:
        return recipe.model.architecture
    from climgen.models.checkpoint import SHIPPED, load_checkpoint

    source = recipe.init_from if recipe.init_from in SHIPPED else recipe.resolve(recipe.init_from)
    return load_checkpoint(source).architecture


def train(recipe: TrainRecipe, log=print, overwrite: bool = False) -> Path:
    """Train a single-scale baseline, the hierarchical generator or the multi-branch one, as
    ``recipe`` says, and return the weights' path. A finished checkpoint at the recipe's
    output is replaced only with ``overwrite``: outputs refined with it name its hash."""
    if recipe.baseline is not None:
        from climgen.training.baselines import train_baseline

        check_files(recipe, overwrite)
        return train_baseline(recipe, log=log)
    trains = architecture(recipe)
    if trains not in ("hierarchical", "amsgm"):
        from climgen.errors import ConfigError

        raise ConfigError(
            f"init_from {recipe.init_from!r} is a {trains} baseline: a fine-tune starts from a generator "
            "('default', 'amsgm-fast', a multi-branch model or a checkpoint of one); baselines are trained from "
            "a recipe's baseline section"
        )
    check_sections(recipe, trains)
    check_files(recipe, overwrite)
    if trains == "hierarchical":
        from climgen.training.hierarchical import train_hierarchical

        return train_hierarchical(recipe, log=log)
    from climgen.training.pretrain import pretrain

    return pretrain(recipe, log=log)


def check_sections(recipe: TrainRecipe, trains: str) -> None:
    """A recipe section the loop would silently ignore is an error naming it: the adversarial
    stage belongs to the multi-branch generator, the corpus to the hierarchical one."""
    from climgen.errors import ConfigError

    if recipe.init_from is not None and "model" in recipe.model_fields_set:
        raise ConfigError(
            f"model: a fine-tune keeps the architecture of init_from ({recipe.init_from!r}); remove the model section"
        )
    if trains == "hierarchical" and recipe.adversarial.steps:
        raise ConfigError("adversarial.steps: the hierarchical generator has no adversarial stage (remove the section)")
    if trains == "hierarchical" and recipe.precision != "float32":
        raise ConfigError("precision: the hierarchical generator trains in float32 (bfloat16 is for the multi-branch one)")
    if not recipe.pretrain.steps and not (trains != "hierarchical" and recipe.adversarial.steps):
        raise ConfigError("pretrain.steps is 0: nothing to train")
    if trains != "hierarchical" and recipe.data.corpus is not None:
        raise ConfigError(f"data.corpus: only the hierarchical generator trains on the corpus, not {trains!r}")


def check_files(recipe: TrainRecipe, overwrite: bool = False) -> None:
    """Before any training: every field the recipe reads exists, and the checkpoint can be
    written where it says (not over a folder, in a folder that can be written, not over a
    finished checkpoint unless ``overwrite``)."""
    from climgen.errors import ConfigError, InputError, OutputExistsError
    from climgen.io.write import check_writable
    from climgen.models.checkpoint import weights_path
    from climgen.training.state import state_paths

    for source in recipe.data.real_fields + recipe.data.validation_fields:
        for path in (source.path, source.covariate_path):
            if path is not None and not Path(recipe.resolve(path)).is_file():
                raise InputError(f"training field not found: {recipe.resolve(path)}")
    output = Path(recipe.resolve(recipe.output))
    if output.is_dir():
        raise ConfigError(f"output {output} is a folder: name the checkpoint to write in it (e.g. {output / recipe.name})")
    finished = weights_path(output)
    resuming = any(path.exists() for path in state_paths(output))
    if finished.exists() and not resuming and not overwrite:
        raise OutputExistsError(
            f"{finished} is a finished checkpoint (outputs refined with it name its hash): pass --overwrite to "
            "replace it, or give another output"
        )
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot make the output folder {folder}: {err.strerror}") from err
    check_writable(folder, f"the checkpoint in {folder}")
