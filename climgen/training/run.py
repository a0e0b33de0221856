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


def train(recipe: TrainRecipe, log=print) -> Path:
    """Train a single-scale baseline, the hierarchical generator or the multi-branch one, as
    ``recipe`` says, and return the weights' path."""
    if recipe.baseline is not None:
        from climgen.training.baselines import train_baseline

        return train_baseline(recipe, log=log)
    trains = architecture(recipe)
    check_sections(recipe, trains)
    if trains == "hierarchical":
        from climgen.training.hierarchical import train_hierarchical

        return train_hierarchical(recipe, log=log)
    from climgen.training.pretrain import pretrain

    return pretrain(recipe, log=log)


def check_sections(recipe: TrainRecipe, trains: str) -> None:
    """A recipe section the loop would silently ignore is an error naming it: the adversarial
    stage belongs to the multi-branch generator, the corpus to the hierarchical one."""
    from climgen.errors import ConfigError

    if trains == "hierarchical" and recipe.adversarial.steps:
        raise ConfigError("adversarial.steps: the hierarchical generator has no adversarial stage (remove the section)")
    if trains != "hierarchical" and recipe.data.corpus is not None:
        raise ConfigError(f"data.corpus: only the hierarchical generator trains on the corpus, not {trains!r}")
