"""The JSON Schema of each manifest format version, shipped as package data.

`schemas/` at the top of the repository is the source of truth. A wheel carries it
as `manifest_compiler/schemas/` (hatch force-include); an editable install or a
plain checkout reads it from the repository next to the package.
"""

from __future__ import annotations

import functools
import json
import os
import typing as t

from . import SCHEMA_VERSIONS
from .errors import UsageError


def schema_filename(version: int) -> str:
    return f"experiment.v{version}.schema.json"


def schema_text(version: int = 1) -> str:
    """The schema of `version` as JSON text, exactly as shipped."""
    if version not in SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in SCHEMA_VERSIONS)
        raise UsageError(f"no schema for format version {version}; known versions: {known}")
    name = schema_filename(version)
    here = os.path.dirname(os.path.realpath(__file__))
    packaged = os.path.join(here, "schemas", name)  # importlib.resources would cost more than validating
    if not os.path.isfile(packaged):
        packaged = os.path.join(os.path.dirname(here), "schemas", name)
    with open(packaged, encoding="utf-8") as f:
        return f.read()


@functools.cache
def load_schema(version: int = 1) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", json.loads(schema_text(version)))


@functools.cache
def validator(version: int = 1) -> t.Any:
    """A jsonschema validator for `version`, built once per process.

    The schema is checked against the 2020-12 metaschema by the test suite and CI,
    not on every run: that check costs more than validating a manifest.
    """
    from jsonschema import Draft202012Validator, validators

    # JSON Schema calls 4.0 an integer; a manifest that says `cpus_per_task: 4.0`
    # would then compile to `--cpus-per-task=4.0`. Only YAML integers are integers.
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = validators.extend(Draft202012Validator, type_checker=checker)
    return strict(load_schema(version))


@functools.cache
def quick_validator(version: int = 1) -> t.Callable[[t.Any], bool]:
    """A yes/no check of `version`'s schema by jsonschema-rs: 0.2 ms to import and build, µs a document.

    It decides only the success path: a document it accepts is valid for `validator`
    too, provided it is plain JSON data with no integral float (`validate._json_plain`):
    JSON Schema calls 4.0 an integer, our `validator` does not. Whatever it refuses goes
    through `validator`, which gives the located messages and the verdict.
    """
    import jsonschema_rs

    return t.cast("t.Callable[[t.Any], bool]", jsonschema_rs.Draft202012Validator(load_schema(version)).is_valid)
