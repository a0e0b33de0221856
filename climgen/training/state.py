"""Resumable training state: model, optimiser, schedule and random streams, without pickle.

Tensors go to ``OUTPUT.train-state.safetensors``; counters and the numpy random state to the
JSON beside it. A run that finds a state written by the same recipe continues from it and ends
with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def recipe_fingerprint(recipe_document: dict) -> str:
    """Hash of everything in a recipe that shapes the training trajectory."""
    return hashlib.sha256(json.dumps(recipe_document, sort_keys=True).encode()).hexdigest()


def state_paths(output: str | Path) -> tuple[Path, Path]:
    base = Path(str(output) + ".train-state")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def interruption_note(output: str | Path, steps: int, checkpoint_every: int, adversarial_steps: int = 0) -> str:
    """What an interrupted run of ``steps`` pre-training steps leaves to resume, said to the
    user; a following adversarial stage of ``adversarial_steps`` saves no state on the way."""
    _, json_path = state_paths(output)
    after = (
        f"; the adversarial stage ({adversarial_steps} steps) saves no state and runs again from its start"
        if adversarial_steps
        else ""
    )
    try:
        step = int(json.loads(json_path.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return (
            f"interrupted before the first saved state (one every {checkpoint_every} steps): "
            "nothing to resume, a rerun starts from the beginning"
        )
    return f"interrupted: step {step} of {steps} is saved in {json_path}; rerun the same command to resume from there" + after


def _tensor_step(tensor_path: Path) -> int | None:
    """The step written into the state's tensors (None for a state saved before it was)."""
    from safetensors import safe_open

    with safe_open(str(tensor_path), framework="pt") as handle:
        step = (handle.metadata() or {}).get("step")
    return None if step is None else int(step)


def _finish_interrupted_save(tensor_path: Path, json_path: Path) -> None:
    """A save killed between its two renames left the new tensors beside the old counters and
    the new counters still under their temporary name: put those in place."""
    pending = Path(str(json_path) + ".tmp")
    if pending.exists() and tensor_path.exists() and not Path(str(tensor_path) + ".tmp").exists():
        if _tensor_step(tensor_path) == int(json.loads(pending.read_text())["step"]):
            os.replace(pending, json_path)


def save_state(
    output, step: int, fingerprint: str, model, optimiser, schedule, rng: np.random.Generator, noise_generator, record: dict
) -> None:
    """Write the state atomically (temporary names, then rename), tensors first; ``record``
    (the validation history, the losses since its last entry, the seconds so far) goes with
    the counters."""
    tensors = {f"model.{name}": tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    optimiser_state = optimiser.state_dict()
    for index, values in optimiser_state["state"].items():
        for key, value in values.items():
            tensors[f"optimiser.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["noise_generator"] = noise_generator.get_state()
    tensor_path, json_path = state_paths(output)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tensor_path) + ".tmp", metadata={"step": str(step)})  # checked against the JSON's
    document = {
        "step": step,
        "fingerprint": fingerprint,
        "schedule": schedule.state_dict() | {"lr_lambdas": None},
        "param_groups": optimiser_state["param_groups"],
        "numpy_rng": rng.bit_generator.state,
        **record,
    }
    Path(str(json_path) + ".tmp").write_text(json.dumps(document))
    os.replace(str(tensor_path) + ".tmp", tensor_path)
    os.replace(str(json_path) + ".tmp", json_path)


def load_state(
    output, fingerprint: str | tuple[str, ...], model, optimiser, schedule, rng: np.random.Generator, noise_generator
) -> tuple[int, dict] | None:
    """Restore a state written by the same recipe; returns (step, its record: ``history``,
    ``running``, ``seconds``, ``arithmetic``) or None where there is none. A state of another recipe, or one
    that cannot be read, is an error that names it: it is an interrupted run's work, so it is
    neither used nor removed without the user."""
    from climgen.errors import TrainingError

    tensor_path, json_path = state_paths(output)
    try:
        _finish_interrupted_save(tensor_path, json_path)
    except (OSError, ValueError, KeyError, SafetensorError):
        pass  # a pending save that cannot be read is no newer state: the one in place is read below
    if not (tensor_path.exists() and json_path.exists()):
        return None
    try:
        document = json.loads(json_path.read_text())
        tensors = load_file(str(tensor_path))
        step = int(document["step"])
        tensor_step = _tensor_step(tensor_path)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise TrainingError(
            f"the saved training state {json_path} cannot be read ({type(err).__name__}: {err}); "
            "remove it and the .safetensors beside it to train from the start"
        ) from err
    if tensor_step is not None and tensor_step != step:
        raise TrainingError(
            f"the saved training state {json_path} says step {step} but its weights are of step {tensor_step} (a save cut "
            "short): remove it and the .safetensors beside it to train from the start"
        )
    accepted = (fingerprint,) if isinstance(fingerprint, str) else fingerprint
    if document.get("fingerprint") not in accepted:
        raise TrainingError(
            f"{json_path} holds step {step} of an interrupted run of another recipe (or other options): "
            "run that recipe again to resume it, or remove this file and the .safetensors beside it to start this one"
        )
    saved_noise = tensors.get("noise_generator")
    if saved_noise is None or saved_noise.numel() != noise_generator.get_state().numel():
        raise TrainingError(
            f"{json_path} holds step {step} with a noise stream of another device (a GPU's, saved by climgen 0.1): "
            "resume it there, or remove this file and the .safetensors beside it to start again"
        )
    model.load_state_dict({name[len("model.") :]: tensor for name, tensor in tensors.items() if name.startswith("model.")})
    restored: dict[int, dict] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimiser."):
            _, index, key = name.split(".", 2)
            restored.setdefault(int(index), {})[key] = tensor
    optimiser.load_state_dict({"state": restored, "param_groups": document["param_groups"]})
    schedule_state = {key: value for key, value in document["schedule"].items() if key != "lr_lambdas"}
    schedule.__dict__.update(schedule_state)
    rng.bit_generator.state = document["numpy_rng"]
    noise_generator.set_state(tensors["noise_generator"])
    return step, {
        "history": list(document.get("history", [])),
        **{k: document[k] for k in ("running", "seconds", "arithmetic") if k in document},
    }


def clear_state(output) -> None:
    """Remove the state once the final checkpoint is written."""
    for path in state_paths(output):
        path.unlink(missing_ok=True)
