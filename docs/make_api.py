"""Write docs/api.md, the API reference, from the docstrings of climgen's public modules.

python docs/make_api.py          # regenerate
python docs/make_api.py --check  # exit 1 when docs/api.md is out of date
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

MODULES = [
    "climgen.pipeline",
    "climgen.accessor",
    "climgen.planning",
    "climgen.inputs",
    "climgen.covariates",
    "climgen.config",
    "climgen.streaming",
    "climgen.stream_options",
    "climgen.scoring",
    "climgen.job_identity",
    "climgen.tasks",
    "climgen.jobs",
    "climgen.io.earthdata",
    "climgen.io.granules",
    "climgen.io.catalog",
    "climgen.io.open",
    "climgen.io.write",
    "climgen.io.lock",
    "climgen.io.manifest",
    "climgen.io.acdd",
    "climgen.io.physical",
    "climgen.io.input_attrs",
    "climgen.grid",
    "climgen.depth.complexity",
    "climgen.depth.gain",
    "climgen.tiling",
    "climgen.refine",
    "climgen.model_calls",
    "climgen.noise",
    "climgen.allocator",
    "climgen.conservation",
    "climgen.regrid",
    "climgen.depth.skill",
    "climgen.depth.compute",
    "climgen.metrics",
    "climgen.evaluation",
    "climgen.benchmark",
    "climgen.plotting",
    "climgen.testing",
    "climgen.random_fields",
    "climgen.models.hierarchical",
    "climgen.models.generator",
    "climgen.models.checkpoint",
    "climgen.training.recipe",
    "climgen.training.corpus",
    "climgen.training.run",
    "climgen.errors",
]
OUTPUT = Path(__file__).with_name("api.md")


def _signature(item) -> str:
    fields = getattr(item, "model_fields", None)
    if inspect.isclass(item) and isinstance(fields, dict):  # pydantic models: their fields, by name
        return "(" + ", ".join(fields) + ")"
    try:
        text = str(inspect.signature(item))
    except (TypeError, ValueError):
        return "()"
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def _doc(item) -> str:
    return inspect.cleandoc(item.__doc__ or "").strip()


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand.",
        "The accessor `ds.climgen.synthesize(...)` / `ds.climgen.complexity(...)` forwards to",
        "`climgen.pipeline.synthesize` / `climgen.pipeline.complexity`.",
        "",
    ]
    for name in MODULES:
        module = importlib.import_module(name)
        lines += [f"## `{name}`", "", _doc(module), ""]
        members = [
            (member_name, member)
            for member_name, member in vars(module).items()
            if not member_name.startswith("_")
            and (inspect.isfunction(member) or inspect.isclass(member))
            and getattr(member, "__module__", None) == name
        ]
        for member_name, member in sorted(members):
            kind = "class" if inspect.isclass(member) else "def"
            lines += [f"### `{kind} {member_name}{_signature(member)}`", "", _doc(member) or "(no docstring)", ""]
            if inspect.isclass(member):
                for method_name, method in sorted(vars(member).items()):
                    if method_name.startswith("_") or not callable(method) or not getattr(method, "__doc__", None):
                        continue
                    lines += [f"- `{method_name}{_signature(method)}`: {_doc(method).splitlines()[0]}"]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    text = render()
    if parser.parse_args().check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            sys.exit(f"{OUTPUT} is out of date: run python docs/make_api.py")
        return
    OUTPUT.write_text(text)


if __name__ == "__main__":
    main()
