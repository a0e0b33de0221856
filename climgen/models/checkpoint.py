"""Checkpoints: weights in safetensors, everything else in a JSON file beside them.

Pickle-based formats (``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) are refused: loading them can run
arbitrary code. The JSON is validated and every tensor shape checked before weights are used.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from climgen.errors import ModelError, TrainingError

FORMAT = "climgen-checkpoint"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar"}
DEFAULT_MODEL = "default"
MULTI_SCALE = ("amsgm", "hierarchical")
"""Architectures that refine in x2 stages."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with the metadata that identifies it."""

    name: str
    architecture: str
    module: object  # torch.nn.Module; typed loosely so this module imports without torch
    sha256: str
    metadata: dict = field(default_factory=dict)
    path: str = ""

    @property
    def config_sha256(self) -> str:
        """SHA-256 of what its JSON says about the network (architecture and config, which
        decide the outputs as the weights do), in canonical JSON."""
        described = {key: self.metadata.get(key) for key in ("architecture", "config")}
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()

    @property
    def multi_scale(self) -> bool:
        """Whether it refines in x2 stages (so tiles may stop early), not a single-scale baseline."""
        return self.architecture in MULTI_SCALE

    @property
    def draws_samples(self) -> bool:
        """Whether its last training ran the adaptive stage with a loss that rewards sampled
        detail (adversarial, feature matching or ensemble weight above 0): each output is then
        one plausible field, not a best guess. The adaptive stage with a spectral loss alone
        still trains a best guess."""
        if "adversarial" not in self.metadata.get("stages", []):
            return False
        settings = self.metadata.get("recipe", {}).get("adversarial", {})
        weights = ("adversarial_weight", "feature_matching_weight", "ensemble_weight")
        return any(settings.get(name, 1.0) > 0 for name in weights)


def default_checkpoint_path() -> Path:
    """Path of the shipped default model's weights."""
    return Path(str(resources.files("climgen.models") / "weights" / "amsgm-default.safetensors"))


SHIPPED = {
    DEFAULT_MODEL: "amsgm-default",
    "amsgm-fast": "amsgm-fast",
    "amsgm-multibranch": "amsgm-multibranch",
    "amsgm-3x3": "amsgm-3x3",
    "amsgm-stage2": "amsgm-stage2",
    "amsgm-stage2-fixed": "amsgm-stage2-fixed",
    "srgan-x4": "srgan-x4",
    "cvae-x4": "cvae-x4",
}


RETIRED = {
    "amsgm-ensemble": "it is retired: the default model draws calibrated members (--members N, members=N), "
    "and gives its best estimate with one",
}
"""Shipped models that are no longer, and what to use instead."""


def resolve_checkpoint_path(model: str | Path) -> Path:
    """Map a shipped model's name (``"default"``; ``"amsgm-multibranch"``, the default of
    0.1.0; the baselines ``"srgan-x4"``, ``"cvae-x4"``; the ablations ``"amsgm-3x3"``,
    ``"amsgm-stage2"``, ``"amsgm-stage2-fixed"``) or a user path
    (weights, JSON or stem) to the weights file."""
    if str(model) in RETIRED:
        raise ModelError(f"model {model!r}: {RETIRED[str(model)]}")
    if str(model) in SHIPPED:
        return default_checkpoint_path().with_name(SHIPPED[str(model)] + ".safetensors")
    path = Path(model).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(
            f"refusing to load {path.name}: pickle-based checkpoints can run code; "
            "climgen loads only safetensors + JSON checkpoints"
        )
    path = weights_path(path)
    if not path.is_file():
        names = {stem: name for name, stem in SHIPPED.items()} | {name: name for name in SHIPPED}
        close = difflib.get_close_matches(str(model), list(names), n=1)
        hint = f" (did you mean the shipped model {names[close[0]]!r}?)" if close else f" (shipped models: {', '.join(SHIPPED)})"
        raise ModelError(f"model checkpoint not found: {path}{hint}")
    if not path.with_suffix(".json").is_file():
        raise ModelError(f"model config not found beside the weights: {path.with_suffix('.json')}")
    return path


def weights_path(path: str | Path) -> Path:
    """The weights file of a checkpoint given as its weights, its JSON or its stem; a stem keeps
    its dots (``amsgm-v1.2`` -> ``amsgm-v1.2.safetensors``)."""
    path = Path(path)
    if path.suffix == ".json":
        return path.with_suffix(".safetensors")
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (recorded in every output for provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(module, path: str | Path, architecture: str, metadata: dict | None = None) -> Path:
    """Write ``module``'s weights to ``path`` (.safetensors) and its config to the JSON beside it."""
    import torch
    from safetensors.torch import save_file

    path = weights_path(path)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    diverged = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if diverged:
        more = f" and {len(diverged) - 1} more" if len(diverged) > 1 else ""
        raise TrainingError(
            f"the weights are not finite ({diverged[0]}{more}): training diverged; "
            f"nothing was written to {path} (lower the learning rate)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    config = path.with_suffix(".json")
    partial, partial_config = path.with_name(path.name + ".partial"), config.with_name(config.name + ".partial")
    save_file(state, str(partial))
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "config": module.config.to_dict(),
        "weights_sha256": file_sha256(partial),
        **_finite_or_none(metadata or {}),
    }
    partial_config.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")
    partial.chmod(partial_config.stat().st_mode & 0o777)  # safetensors creates 0600: readable as the JSON is
    # each file replaces its older one whole; the weights' checksum in the JSON tells a pair
    # cut between the two replacements apart
    os.replace(partial, path)
    os.replace(partial_config, config)
    return path


def _finite_or_none(value: object) -> object:
    """``value`` with NaN and infinities (a validation score without cells) as None: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _read_document(path: Path) -> dict:
    try:
        document = json.loads(path.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"model config {path.with_suffix('.json')} is not valid JSON: {err}") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelError(f"{path.with_suffix('.json')} is not a climgen checkpoint config")
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"unsupported checkpoint format_version {document.get('format_version')!r}")
    return document


def load_checkpoint(model: str | Path = DEFAULT_MODEL) -> Checkpoint:
    """Load a generator from safetensors + JSON, validating config and tensor shapes first."""
    path = resolve_checkpoint_path(model)
    # keyed by both files: a JSON edited beside the same weights is another model
    config_file = path.with_suffix(".json")  # a missing one is said by _read_document
    return _load_cached(str(path), file_sha256(path), file_sha256(config_file) if config_file.is_file() else "")


def _architectures() -> dict:
    """Architecture name in the JSON -> (module class, config class); imported on use."""
    from climgen.models.baselines import BaselineConfig, ConditionalVAE, SingleScaleGenerator
    from climgen.models.generator import AdaptiveMultiScaleGenerator, GeneratorConfig
    from climgen.models.hierarchical import HierarchicalConfig, HierarchicalGenerator

    return {
        "amsgm": (AdaptiveMultiScaleGenerator, GeneratorConfig),
        "hierarchical": (HierarchicalGenerator, HierarchicalConfig),
        "srgan": (SingleScaleGenerator, BaselineConfig),
        "cvae": (ConditionalVAE, BaselineConfig),
    }


@lru_cache(maxsize=8)
def _load_cached(path_text: str, sha256: str, config_file_sha256: str) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path_text)
    document = _read_document(path)
    recorded = document.get("weights_sha256")
    if recorded and recorded != sha256:
        raise ModelError(f"{path.name} does not match the checksum in its JSON (corrupt or replaced file)")
    architecture = document.get("architecture")
    builders = _architectures()
    if architecture not in builders:
        raise ModelError(f"unknown architecture {architecture!r} in {path.with_suffix('.json').name}")
    module_class, config_class = builders[architecture]
    try:
        config = config_class.from_dict(document.get("config", {}))
        module = module_class(config)
    except (TypeError, ValueError) as err:
        raise ModelError(f"invalid generator config in {path.with_suffix('.json').name}: {err}") from err
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelError(f"cannot read weights {path.name}: {err}") from err
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        mismatched = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise ModelError(f"weights in {path.name} do not match the config: {mismatched}")
    module.load_state_dict(state, strict=True)
    module.eval()
    name = document.get("name", path.stem)
    return Checkpoint(name=name, architecture=architecture, module=module, sha256=sha256, metadata=document, path=str(path))
