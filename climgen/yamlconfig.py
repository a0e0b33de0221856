"""Typed configuration read from YAML: one loader with errors that name the offending field."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from climgen.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """Base of every recipe section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def yaml_problem(err: yaml.YAMLError) -> str:
    """Where and what a YAML parser found wrong, in one line (``" at line 3, column 5: ..."``)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where}: {problem}"


def load_yaml_model(path: str | Path, schema: type[Model], **extra) -> Model:
    """Read ``path`` and validate it against ``schema`` (``extra`` fields are added)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read recipe {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"recipe {path} is not text (a YAML file is; was a data file given?)") from err
    except ValueError as err:  # a value YAML reads but cannot hold, e.g. an unquoted date 2020-02-30
        raise ConfigError(f"recipe {path}: {err} (quote the value if it is not meant as a date)") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML{yaml_problem(err)}") from err
    if not isinstance(document, dict):
        raise ConfigError(f"recipe {path} must be a mapping")
    given = sorted(set(document) & set(extra))
    if given:
        raise ConfigError(f"recipe {path}: {given[0]} is not a recipe key (climgen sets it: the recipe's own folder)")
    try:
        return schema(**document, **extra)
    except ValidationError as err:
        raise ConfigError(f"recipe {path}: {validation_message(err, schema)}") from err


SET_BY_CLIMGEN = frozenset({"base_dir"})
"""Fields of a recipe's model that climgen fills in (the recipe's own folder): never keys to suggest."""


def validation_message(err: ValidationError, schema: type[BaseModel] | None = None) -> str:
    """The first problem pydantic found, as ``field.path: message`` (the message alone for a
    check of the whole document), without pydantic's ``Value error,`` prefix; an unknown key
    is named as one, with the nearest key of ``schema`` at that place when there is one."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden" and first["loc"]:
        *section, key = first["loc"]
        known = _keys_at(schema, section) if schema is not None else []
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (known: {', '.join(known)})" if known else "")
        place = f" in {'.'.join(map(str, section))}" if section else ""
        return f"unknown key {key!r}{place}{hint}"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _keys_at(schema: type[BaseModel], section: list) -> list[str]:
    """The keys a recipe may give at ``section`` (a path of keys) of ``schema``, or [] where
    the path leads to no model (a list or mapping of values)."""
    model = schema
    for part in section:
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        candidates = [field.annotation, *typing.get_args(field.annotation)] if field is not None else []
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(name for name, field in model.model_fields.items() if not field.exclude and name not in SET_BY_CLIMGEN)
