"""Typed configuration read from YAML: one loader with errors that name the offending field."""

from __future__ import annotations

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
        raise ConfigError(f"recipe {path}: {validation_message(err)}") from err


def validation_message(err: ValidationError) -> str:
    """The first problem pydantic found, as ``field.path: message`` (the message alone for a
    check of the whole document), without pydantic's ``Value error,`` prefix."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
