"""Import torch where it is needed, with a clear error when it is missing."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from climgen.errors import MissingDependencyError


def import_torch() -> ModuleType:
    """Return the ``torch`` module or raise :class:`MissingDependencyError`."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise MissingDependencyError("climgen needs PyTorch for refinement: pip install 'torch>=2.13'") from err
    return torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch on ``count`` intra-op threads inside the block, then restore the setting.

    Convolutions can round differently with different thread counts, so the streaming path
    runs every task on one thread (parallel across tasks instead): then results are the same
    bits whatever the number of workers.
    """
    torch = import_torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_device_name(device: str) -> str:
    """``device`` if it names a device climgen runs on (``auto``, ``cpu``, ``cuda``, ``cuda:N``),
    whether or not this machine has it (a cluster's workers may)."""
    from climgen.errors import ConfigError

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N (a GPU's index), got {device!r}")
    return device


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` (GPU N of those this process sees) are checked."""
    device = check_device_name(device or "auto")
    if device == "auto":
        return "cuda" if import_torch().cuda.is_available() else "cpu"
    return check_device(device)


def check_device(device: str) -> str:
    """``device``, if torch can run on it here (a clear error for ``cuda`` without a GPU, or
    ``cuda:N`` past the GPUs this process sees)."""
    from climgen.errors import ConfigError

    torch = import_torch()
    if device.startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ConfigError(
            f"device {device!r} asked for, but torch {torch.__version__} ({build}) sees no CUDA GPU here; use cpu or auto"
        )
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} asked for, but this process sees {torch.cuda.device_count()} GPU(s) "
            "(numbered from 0; CUDA_VISIBLE_DEVICES renumbers them)"
        )
    return device


def software() -> dict:
    """What the model's numbers depend on besides the model: torch's version and the CPU
    instructions its kernels use here (``ATEN_CPU_CAPABILITY`` and oneDNN's ISA change the
    bits of a bf16 run), for the provenance and a streamed job's identity."""
    import numpy
    import xarray

    torch = import_torch()
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else None
    return {
        "torch": torch.__version__,
        "cpu_capability": capability,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "numpy": numpy.__version__,
        "xarray": xarray.__version__,
    }


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bf16 convolutions natively: GPUs, and CPUs with AVX512-BF16
    or AMX. Elsewhere oneDNN emulates bf16, 2 to 10 times slower than float32."""
    torch = import_torch()
    if device.startswith("cuda"):
        # bf16 tensor cores from compute capability 8.0 (A100, H100); older GPUs emulate it
        # (where no GPU is seen here, as on a cluster's planning machine, a current one is assumed)
        return not torch.cuda.is_available() or torch.cuda.get_device_capability(device) >= (8, 0)
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def resolve_precision(precision: str | None, device: str) -> str:
    """``auto`` -> ``bfloat16`` where ``device`` (cpu or cuda) computes it natively, else
    ``float32``; other names are checked. bf16 convolutions run about twice as fast; the
    normalisation, upsampling and projection stay float32, so the result differs from float32's
    by under 1% of the fine detail and keeps the coarse means exactly."""
    from climgen.errors import ConfigError

    precision = precision or "auto"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return precision


def model_on_device(model, device: str):
    """A channels-last copy of ``model`` on ``device``: the loaded checkpoint is cached and
    shared, and stays as loaded. Channels-last convolutions are faster on GPUs and, for these
    24-channel maps, 10-15% faster on CPU too. A model already there in that layout, or one
    without weights, is returned as is."""
    torch = import_torch()
    weights = next((p for p in model.parameters() if p.dim() == 4), None) if hasattr(model, "parameters") else None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if weights is None or (weights.device == device and weights.is_contiguous(memory_format=torch.channels_last)):
        return model
    return copy.deepcopy(model).to(device, memory_format=torch.channels_last)
