"""Validate: LoadedManifest -> list[Problem].

Two layers: the JSON Schema (structure, types, patterns, maxima) and the semantic
rules the schema cannot say (subset paths, bind targets, option names owned by
mcompile, time > 0, exactly one kind of run, grid placeholders). Every problem is
located at the node it is about; all of a file's problems are reported, in
document order.
"""

from __future__ import annotations

import math
import posixpath
import re
import reprlib
import shlex
import typing as t

from . import SCHEMA_VERSIONS
from .errors import Problem, format_path
from .load import LoadedManifest
from .model import (
    CODE_TARGET,
    DATA_TARGET,
    DEFAULT_BEFORE_END,
    DEFAULT_LAUNCHER,
    DEFAULT_LOCAL_TMP,
    DEFAULT_RESOURCES,
    DEFAULT_SCRATCH,
    DISTRIBUTED_ENV,
    OWN_TARGETS,
    RESERVED_ENV_PREFIXES,
    SYSTEM_TARGETS,
    SYSTEM_TREES,
    WANDB_NAMES,
    processes_per_node,
    world_size,
)
from .units import format_human_time, minutes_seconds, parse_mem, parse_time

# The largest number of array tasks one manifest may describe (a grid's product,
# a commands list, a sweep's agents). Above it compile refuses, with this number.
MAX_TASKS = 1_000_000

# SLURM's --signal=B:SIG@TIME takes at most 65535 seconds.
MAX_SIGNAL_SECONDS = 65535

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 4
_short.maxdict = 4


def validate_manifest(loaded: LoadedManifest) -> list[Problem]:
    """All problems of a loaded manifest, errors and warnings, in document order."""
    data = loaded.data
    version = data.get("version")
    if not (isinstance(version, int) and not isinstance(version, bool) and version in SCHEMA_VERSIONS):
        known = ", ".join(str(v) for v in SCHEMA_VERSIONS)
        if "version" not in data:
            return [loaded.problem((), f"missing required key 'version' (supported format versions: {known})")]
        return [loaded.problem(("version",), f"unsupported format version {_yaml_text(version)}; supported: {known}")]
    version = int(version)  # a plain int: SourceInt would miss the schema caches (functools keys by type)
    problems = _schema_problems(loaded, version)
    problems += _semantic_problems(loaded, refused={p.path for p in problems})
    return sorted(set(problems), key=lambda p: (p.file != loaded.path, p.file, p.line, p.col, p.path, p.message))


def _schema_problems(loaded: LoadedManifest, version: int) -> list[Problem]:
    from .schema import quick_validator, validator

    plain = _json_plain(loaded.data)
    if plain is not _NOT_PLAIN and quick_validator(version)(plain):
        return []  # valid: jsonschema is needed only to say what is wrong
    v = validator(version)
    document, long_lists = _without_long_lists(loaded.data, version)
    errors = list(_chain(v.iter_errors(document), _long_list_errors(v, long_lists)))
    # an unknown key that stands for a missing one (`resorces`, or `mem` written above
    # `resources`) is the one problem: the missing key is not reported again
    covered = set()
    for error in errors:
        if error.validator == "additionalProperties":
            for name in error.instance:
                target = _unknown_key_target(name, error.schema)
                if target:
                    covered.add((tuple(error.absolute_path), target[0]))
    problems: list[Problem] = []
    valued: set[tuple[str | int, ...]] = set()
    for error in errors:
        # one problem per value: an empty path should not also be told it is not a
        # single line, nor lack .sif; keys (unknown, missing) are reported each
        path = tuple(error.absolute_path)
        if error.validator == "required" and (path, _missing_key(error)) in covered:
            continue
        if error.validator in _VALUE_KEYWORDS and "propertyNames" not in error.schema_path:
            if path in valued:
                continue
            valued.add(path)
        problems.extend(_describe(loaded, error, v.schema))
    return problems


# Integers JSON and Python agree on exactly (jsonschema-rs keeps larger ones as floats).
_EXACT_INT = 2**53
_NOT_PLAIN = object()


def _json_plain(value: object) -> object:
    """`value` as data jsonschema-rs reads with our validator's meaning, or _NOT_PLAIN.

    Mappings with str keys, lists, str, bool, None, ints within 2**53 and finite floats
    that are not integral (4.0 is an integer to JSON Schema, not to mcompile). The loader's
    SourceInt/SourceFloat become plain numbers (jsonschema-rs takes exact types only);
    containers are copied only where something inside changed. Nesting is bounded by load.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        mapping = t.cast("dict[object, object]", value)
        out: dict[object, object] | None = None
        for key, item in mapping.items():
            if type(key) is not str:
                return _NOT_PLAIN
            plain = _json_plain(item)
            if plain is _NOT_PLAIN:
                return _NOT_PLAIN
            if plain is not item:
                out = dict(mapping) if out is None else out
                out[key] = plain
        return mapping if out is None else out
    if kind is list:
        items = t.cast("list[object]", value)
        if all(type(item) is str for item in items):  # long lists are mostly strings
            return items
        converted = [_json_plain(item) for item in items]
        if any(item is _NOT_PLAIN for item in converted):
            return _NOT_PLAIN
        return converted
    if isinstance(value, bool):
        return _NOT_PLAIN  # a bool subclass
    if isinstance(value, int):
        return int(value) if -_EXACT_INT <= value <= _EXACT_INT else _NOT_PLAIN
    if isinstance(value, float):
        return float(value) if math.isfinite(value) and not value.is_integer() else _NOT_PLAIN
    return _NOT_PLAIN


def _chain(*iterables: t.Iterable[t.Any]) -> t.Iterator[t.Any]:
    for iterable in iterables:
        yield from iterable


# Long lists of scalars (commands, grid values) are checked item by item with a
# predicate derived from the item's schema, and only failing items go through
# jsonschema (which costs ~25 us an item in $ref/anyOf bookkeeping: 2.4 s for
# 100,000 commands). The predicate covers a few keywords exactly; an item schema
# using any other keyword gets no fast path.
LONG_LIST = 64
# Keywords that say nothing about validity: wording for people and editors.
_ANNOTATIONS = frozenset({"description", "title", "x-expected", "patternErrorMessage", "errorMessage"})
_QUICK_KEYWORDS = frozenset({"type", "minLength", "maxLength", "pattern"}) | _ANNOTATIONS


def _long_list_paths(data: dict[str, t.Any]) -> list[tuple[str, ...]]:
    run = data.get("run")
    if not isinstance(run, dict):
        return []
    paths: list[tuple[str, ...]] = [("run", "commands")]
    grid = run.get("grid")
    if isinstance(grid, dict) and isinstance(grid.get("parameters"), dict):
        paths += [("run", "grid", "parameters", name) for name in grid["parameters"]]
    return paths


def _item_schema(path: tuple[str, ...], version: int) -> dict[str, t.Any]:
    from .schema import load_schema

    run: dict[str, t.Any] = load_schema(version)["properties"]["run"]["properties"]
    if path[1] == "commands":
        return t.cast("dict[str, t.Any]", run["commands"])
    return t.cast("dict[str, t.Any]", run["grid"]["properties"]["parameters"]["additionalProperties"])


def _quick_check(schema: dict[str, t.Any], defs: dict[str, t.Any]) -> t.Callable[[t.Any], bool] | None:
    if "$ref" in schema:
        return _quick_check(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        branches = [_quick_check(s, defs) for s in schema["anyOf"]]
        if any(b is None for b in branches):
            return None
        return lambda value: any(b(value) for b in branches)  # type: ignore[misc]
    if not set(schema) <= _QUICK_KEYWORDS:
        return None
    kind = schema.get("type")
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", float("inf"))
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        return lambda v: isinstance(v, str) and low <= len(v) <= high and (pattern is None or pattern.search(v) is not None)
    if kind == "number":
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "boolean":
        return lambda v: isinstance(v, bool)
    return None


def _without_long_lists(data: dict[str, t.Any], version: int) -> tuple[dict[str, t.Any], list[tuple[tuple[str, ...], list[t.Any], dict[str, t.Any]]]]:
    """The document with each long scalar list cut to its first item, and the lists cut."""
    from .schema import load_schema

    defs = load_schema(version)["$defs"]
    cut = []
    for path in _long_list_paths(data):
        node: t.Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, list) or len(node) <= LONG_LIST:
            continue
        schema = _item_schema(path, version)
        if set(schema) - {"type", "minItems", "maxItems", "items"} - _ANNOTATIONS or "items" not in schema:
            continue
        if _quick_check(schema["items"], defs) is None:
            continue
        cut.append((path, node, schema))
        data = _replaced(data, path, node[:1])
    return data, cut


def _replaced(doc: dict[str, t.Any], path: tuple[str, ...], value: t.Any) -> dict[str, t.Any]:
    out = dict(doc)
    out[path[0]] = value if len(path) == 1 else _replaced(doc[path[0]], path[1:], value)
    return out


def _long_list_errors(v: t.Any, cut: list[tuple[tuple[str, ...], list[t.Any], dict[str, t.Any]]]) -> t.Iterator[t.Any]:
    from jsonschema.exceptions import ValidationError

    defs = v.schema["$defs"]
    for path, items, schema in cut:
        if len(items) > schema.get("maxItems", len(items)):
            yield ValidationError(f"{len(items)} items", validator="maxItems", validator_value=schema["maxItems"],
                                  instance=items, schema=schema, path=list(path))
        quick = _quick_check(schema["items"], defs)
        assert quick is not None
        item_validator = v.evolve(schema=schema["items"])
        for i, item in enumerate(items[1:], start=1):  # item 0 stayed in the document
            if quick(item):
                continue
            for error in item_validator.iter_errors(item):
                error.path.extendleft(reversed([*path, i]))
                yield error


_VALUE_KEYWORDS = frozenset({"type", "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum",
                             "anyOf", "minItems", "maxItems", "minProperties", "maxProperties"})


def _yaml_text(value: object) -> str:
    """A scalar as YAML spells it (true, not True), shortened."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(getattr(value, "text", None) or _short.repr(value))


def _missing_key(error: t.Any) -> str:
    return str(error.message.split("'")[1] if "'" in error.message else error.validator_value)


def _unknown_key_target(name: str, schema: dict[str, t.Any]) -> tuple[str, ...] | None:
    """Where an unknown key of a mapping with `schema` belongs: a key of it (a typo or
    another name for it, `x-aliases`), or a key of one of its mappings (written one level
    too high). None when nothing fits."""
    properties: dict[str, t.Any] = schema.get("properties", {})
    for known, sub in properties.items():
        if name in sub.get("x-aliases", ()):
            return (known,)
    for known, sub in properties.items():  # `mem` at the top level: resources.mem
        inner = sub.get("properties", {})
        if name in inner:
            return (known, name)
        for field, field_schema in inner.items():
            if name in field_schema.get("x-aliases", ()):
                return (known, field)
    normal = name.lower().replace("-", "_")
    if normal in properties:
        return (normal,)
    import difflib  # only for an unknown key: 1 ms to import

    hint = difflib.get_close_matches(normal, sorted(properties), n=1, cutoff=0.6)
    return (hint[0],) if hint else None


def _schema_at(root: dict[str, t.Any], schema_path: t.Iterable[str | int]) -> t.Any:
    node: t.Any = root
    for part in schema_path:
        node = node[part]
    return node


def _describe(loaded: LoadedManifest, error: t.Any, root: dict[str, t.Any]) -> list[Problem]:
    """Turn one jsonschema error into located, readable problems."""
    path = tuple(error.absolute_path)
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    schema = error.schema

    if keyword == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        out = []
        for name in instance:
            if name in known:
                continue
            target = _unknown_key_target(name, schema)
            if target and len(target) == 2:
                where = format_path((*path, *target))
                msg = f"unknown key {name!r} here; it belongs under {format_path((*path, target[0]))}: indent it there as {where}"
            elif target:
                msg = f"unknown key {name!r}; did you mean {target[0]!r}?"
            else:
                msg = f"unknown key {name!r}; expected one of: {', '.join(known)}"
            out.append(loaded.problem((*path, name), msg, key=True))
        return out
    if keyword == "required":
        return [loaded.problem(path, f"missing required key {_missing_key(error)!r}")]
    if keyword == "dependentRequired":
        return [loaded.problem(path, f"missing required key {_missing_key(error)!r} (a file with {value and next(iter(value))!r} says its format version)")]
    schema_path = list(error.absolute_schema_path)
    if "dependentSchemas" in schema_path:  # run: two kinds given
        at = schema_path.index("dependentSchemas") + 2
        return [loaded.problem(path, _one_of_message(_schema_at(root, schema_path[:at]), _at(loaded.data, path)))]
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key as an error of the key's own schema, at the mapping
        return [loaded.problem((*path, instance), _key_message(instance, schema), key=True)]
    if keyword == "anyOf" and "x-expected" in schema:  # run: no kind given
        return [loaded.problem(path, _one_of_message(schema, instance))]
    if keyword == "pattern" and schema == root["$defs"]["path"] and isinstance(instance, str) and _one_line(instance):
        return [loaded.problem(path, _relative_path_message(path, instance))]
    message = _any_of_message(error, root) if keyword == "anyOf" else _message(keyword, value, instance, schema)
    return [loaded.problem(path, _with_hint(path, instance, message))]


def _one_line(text: str) -> bool:
    return not any(c in text for c in "\n\r\0")


# Roots whose default is a variable: a relative value is better left out than prefixed.
_ROOT_DEFAULTS = {("cluster", "scratch"): DEFAULT_SCRATCH, ("cluster", "local_tmp"): DEFAULT_LOCAL_TMP}


def _relative_path_message(field: tuple[str | int, ...], path: str) -> str:
    """Why a host path that the schema refused (one line, not absolute) fails on the node, and
    what to write. The job expands only a leading `~` or `~/` (as $HOME), `$NAME` and `${NAME}`
    (render.shell_path); anything else is literal text, relative to the run directory."""
    shown = _short.repr(path)
    on_the_node = "it would look for it in the run directory on the compute node"
    if path.startswith("~"):
        user = path[1:].split("/", 1)[0]
        return (f"{shown} is a relative path to the job, which expands only ~ and ~/… (to $HOME): {on_the_node}; "
                f"write the absolute path of {user}'s home folder ($HOME/… for your own)")
    if path.startswith("$"):
        return (f"{shown} is a relative path to the job, which expands only $NAME and ${{NAME}} in a path: {on_the_node}, "
                "as written; write $SCRATCH/…, $HOME/… or an absolute path")
    if field in _ROOT_DEFAULTS:
        return (f"{shown} is a relative path: the job would look for it in the run directory on the compute node; "
                f"write an absolute path, or leave {format_path(field)} out for its default, {_ROOT_DEFAULTS[field]}")
    tail = posixpath.normpath(path)
    if tail == "." or tail.startswith("../") or tail == ".." or len(tail) > 64 or not tail.isprintable():
        tail = "…"
    return f"{shown} is a relative path: the job would look for it in the run directory on the compute node; write $SCRATCH/{tail}, $HOME/{tail} or another absolute path"


def _one_of_message(schema: dict[str, t.Any], mapping: t.Any) -> str:
    """`expected exactly one of commands, commands_file, grid, sweep; commands and sweep given`."""
    names = [n.strip() for n in schema["x-expected"].split(" of ", 1)[1].split(",")]
    given = [n for n in names if isinstance(mapping, dict) and n in mapping]
    listed = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 2 else given)
    return f"expected {schema['x-expected']}; {listed + ' given' if given else 'none given'}"


def _at(data: t.Any, path: t.Sequence[str | int]) -> t.Any:
    for part in path:
        data = data[part]
    return data


def _key_message(name: str, schema: dict[str, t.Any]) -> str:
    set_by: dict[str, str] | None = schema.get("x-set-by")
    if set_by is None:
        return f"key {name!r} is not {schema.get('x-expected', 'a valid name')}"
    if name in set_by:
        field = set_by[name]
        if field:
            return f"--{name} is set by mcompile itself; write {field} instead"
        return f"--{name} is set by mcompile itself and cannot be changed; remove it"
    owned = sorted(o for o in set_by if o.startswith(name))
    return f"sbatch reads --{name} as an abbreviation of --{owned[0]}, which mcompile sets itself; write the full option name"


_TIME_PATHS = (("resources", "time"), ("resources", "requeue", "before_end"))
_TIME_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_TIME_WORDS = ((r"days?", "d"), (r"(?:hours?|hrs?)", "h"), (r"(?:minutes?|mins?)", "m"), (r"(?:seconds?|secs?)", "s"))
_TIME_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([dhms]?)")


def _with_hint(path: tuple[str | int, ...], instance: object, message: str) -> str:
    """The message, with what to write instead where the value shows what was meant."""
    if isinstance(instance, str) and len(instance) > 64:
        return message  # no hint is shorter than the value's own problem
    if path in _TIME_PATHS and isinstance(instance, str):
        try:
            parse_time(instance)
        except ValueError as e:
            if "must be" in str(e):  # the form is right, a field is out of range: the parser says which
                return str(e)
        hint = _time_hint(instance)
        return f"{message}; write {hint}" if hint else message
    if path == ("resources", "mem"):
        hint = _mem_hint(instance)
        return f"{message}; write {hint}" if hint else message
    if path == ("resources", "gpus") and isinstance(instance, str):
        typed = re.fullmatch(r"(?:gpu:)?([A-Za-z0-9][A-Za-z0-9._+-]*):([0-9]+)", instance.strip())
        if typed:
            return f"{message}; write gpus: {int(typed[2])} and gpu_type: {typed[1]}"
        if instance.strip().isdigit():
            return f"{message}; write gpus: {int(instance)} (a number, without quotes)"
    return message


def _time_hint(text: str) -> str | None:
    """`3h30` and `3.5h` -> `3h30m`; `90 min` -> `90m`. None when the meaning is unclear."""
    compact = text.strip().lower()
    for words, unit in _TIME_WORDS:
        compact = re.sub(rf"(?<=[0-9 ]){words}\b", unit, compact)
    compact = compact.replace(" ", "")
    seconds, previous, pos = 0.0, "", 0
    while pos < len(compact):
        part = _TIME_PART.match(compact, pos)
        if not part:
            return None
        unit = part[2] or {"d": "h", "h": "m", "m": "s"}.get(previous, "")
        if not unit or (previous and _TIME_UNITS[unit] >= _TIME_UNITS[previous]):
            return None  # `3.5` alone, or units out of order
        seconds += float(part[1]) * _TIME_UNITS[unit]
        previous, pos = unit, part.end()
    if not previous or seconds != int(seconds) or not seconds:
        return None
    out = format_human_time(int(seconds))
    try:
        parse_time(out)
    except ValueError:
        return None
    return out if out and out != text else None


def _mem_hint(value: object) -> str | None:
    """`16`, `16GB`, `16g`, `16 GiB` -> `16G`; `1.5G` -> `1536M`. A bare number is read as G below
    1024 and as M from 1024 on (`4096` is SLURM's 4096 MB)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?) *([kmgtKMGT]?)(?:i?[bB])?", text)
    if not match:
        return None
    number, unit = float(match[1]), match[2].upper()
    if not unit:
        unit = "G" if number < 1024 else "M"
    units = "KMGT"
    kib = number * 1024 ** units.index(unit)
    if kib != int(kib) or kib <= 0:
        return None
    power = units.index(unit)
    while power > 0 and (kib / 1024**power) != int(kib / 1024**power):
        power -= 1
    hint = f"{int(kib // 1024**power)}{units[power]}"
    try:
        parse_mem(hint)
    except ValueError:
        return None
    return hint if hint != text else None


def _any_of_message(error: t.Any, root: dict[str, t.Any]) -> str:
    # Prefer the branch whose type matches: its error says what is really wrong.
    for sub in error.context:
        if sub.validator not in ("type", "const") and not sub.relative_path:
            return _message(sub.validator, sub.validator_value, sub.instance, sub.schema)
    kinds = []
    for branch in error.validator_value:
        if "$ref" in branch:
            branch = _schema_at(root, branch["$ref"].split("/")[1:])
        if "const" in branch:
            kinds.append(_yaml_text(branch["const"]))
        elif "type" in branch:
            kinds.append(_type_name(branch["type"]))
    return f"expected {' or '.join(dict.fromkeys(kinds))}, got {_describe_value(error.instance)}"


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


def _type_name(kind: str | list[str]) -> str:
    if isinstance(kind, list):
        return " or ".join(_TYPE_NAMES.get(k, k) for k in kind)
    return _TYPE_NAMES.get(kind, kind)


def _describe_value(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {_short.repr(value)}"
    kind = "integer" if isinstance(value, int) else "number"
    return f"the {kind} {getattr(value, 'text', value)}"


def _message(keyword: str, value: t.Any, instance: t.Any, schema: dict[str, t.Any]) -> str:
    got = _describe_value(instance)
    if keyword == "type":
        return f"expected {_type_name(value)}, got {got}"
    if keyword == "const":
        return f"expected {_yaml_text(value)}, got {got}"
    if keyword == "enum":
        return f"expected one of {', '.join(map(str, value))}; got {got}"
    if keyword == "pattern":
        expected = schema.get("x-expected", f"text matching {value}")
        return f"expected {expected}; got {got}"
    if keyword == "maximum":
        return f"must be at most {value}; got {getattr(instance, 'text', instance)}"
    if keyword == "minimum":
        return f"must be at least {value}; got {getattr(instance, 'text', instance)}"
    if keyword == "minItems":
        return "must not be empty" if value == 1 else f"needs at least {value} items"
    if keyword == "maxItems":
        return f"has {len(instance)} items; at most {value} allowed"
    if keyword == "minLength":
        return "must not be empty"
    if keyword == "maxLength":
        return f"is {len(instance)} characters long; at most {value} allowed"
    if keyword == "minProperties":
        return "must not be empty"
    if keyword == "maxProperties":
        return f"has {len(instance)} entries; at most {value} allowed"
    if "x-expected" in schema:  # a rule the schema words itself (maxContains, ...)
        return f"expected {schema['x-expected']}"
    return f"is not valid ({keyword} {_short.repr(value)})"


# --- semantic rules -----------------------------------------------------------


def _semantic_problems(loaded: LoadedManifest, *, refused: set[str]) -> list[Problem]:
    """Rules beyond the schema; `refused`: paths the schema already reported."""
    data = loaded.data
    out: list[Problem] = []
    out += _check_run(loaded, data.get("run"))
    out += _check_commands_file(loaded, refused)
    resources = _mapping(data.get("resources"))
    for key, parse in (("time", parse_time), ("mem", parse_mem)):
        value = resources.get(key)
        # integers: the schema's minimum and maximum say it; text the schema refused: likewise
        if isinstance(value, str) and f"resources.{key}" not in refused:
            try:
                parse(value)
            except ValueError as e:
                out.append(loaded.problem(("resources", key), str(e)))
            else:
                out += _check_minutes_form(loaded, ("resources", key), value)
    if resources.get("gpu_type") is not None and resources.get("gpus", DEFAULT_RESOURCES["gpus"]) == 0:
        out.append(loaded.problem(("resources", "gpu_type"), "gpu_type needs resources.gpus > 0"))
    out += _check_subsets(loaded, _mapping(data.get("data")).get("subsets"))
    out += _check_targets(loaded, _mapping(data.get("container")), refused, data.get("code"))
    out += _check_bind_sources(loaded, data, refused)
    data_section = _mapping(data.get("data"))
    if data_section.get("build") == "job" and data_section.get("stage", "archive") != "archive" and "data.build" not in refused:
        out.append(loaded.problem(("data", "build"), f"build: job builds archives, but data.stage is {data_section.get('stage')}; "
                                  "remove data.build, or write stage: archive"))
    out += _check_sbatch_options(loaded, _mapping(_mapping(data.get("cluster")).get("sbatch_options")))
    out += _check_env_names(loaded, data)
    out += _check_launcher(loaded, data, refused)
    out += _check_requeue(loaded, resources, refused)
    out += _check_cluster_facts(loaded, data, refused)
    return out


def _check_cluster_facts(loaded: LoadedManifest, data: dict[str, t.Any], refused: set[str]) -> list[Problem]:
    """What the cluster says of itself (cluster.internet, account_required, max_time, gpu_types,
    gpu_counts; a site profile sets them) against what the manifest asks for."""
    cluster, resources, run = _mapping(data.get("cluster")), _mapping(data.get("resources")), _mapping(data.get("run"))
    where = f"on {cluster['name']}" if isinstance(cluster.get("name"), str) else "on this cluster"
    out: list[Problem] = []
    modules = cluster.get("modules")
    proxied = isinstance(modules, list) and any(isinstance(m, str) and m.split("/")[0] == "httpproxy" for m in modules)
    if cluster.get("internet") is False and "sweep" in run and not proxied:
        out.append(loaded.problem(("run", "sweep"), f"compute nodes have no internet {where} (cluster.internet: false), so wandb agent "
                                  "cannot reach the sweep's controller; add httpproxy to cluster.modules where the site has it, "
                                  "or write the configurations as run.grid with wandb.mode: offline and sync the runs with mcompile sync"))
    if cluster.get("account_required") is True and not cluster.get("account") and data.get("base") is not True:  # a base is partial
        own = loaded.sources[0].data  # point at the manifest to change, not at the profile that says it
        at = ("cluster",) if "cluster" in own or "extends" not in own else ("extends",)
        out.append(loaded.problem(at, f"jobs are charged to an allocation {where} (cluster.account_required): "
                                  "set cluster.account, e.g. account: def-yourpi", key=True))
    limit, time = cluster.get("max_time"), resources.get("time")
    if limit is not None and time is not None and "cluster.max_time" not in refused and "resources.time" not in refused:
        try:
            longest, asked = parse_time(limit), parse_time(time)
        except (ValueError, TypeError):
            longest = asked = 0  # the value's own problem is reported where it is
        if asked > longest:
            out.append(loaded.problem(("resources", "time"), f"{format_human_time(asked)} is longer than the longest job {where}, "
                                      f"{format_human_time(longest)} (cluster.max_time); ask for at most that, and requeue "
                                      "(resources.requeue) to go on in a new job"))
    wandb = data.get("wandb")
    if isinstance(wandb, dict) and cluster.get("internet") is False and wandb.get("mode", "online") == "online" and not proxied:
        spot: tuple[str, ...] = ("wandb", "mode") if "mode" in wandb else ("wandb",)
        out.append(loaded.problem(spot, f"compute nodes have no internet {where} (cluster.internet: false): online W&B logging would "
                                  "hang until the time limit; write wandb.mode: offline (then mcompile sync RUN uploads the runs), "
                                  "or add httpproxy to cluster.modules where the site has it", key="mode" not in wandb, level="warning"))
    kinds, kind = cluster.get("gpu_types"), resources.get("gpu_type")
    if isinstance(kinds, list) and isinstance(kind, str) and kind not in kinds:
        out.append(loaded.problem(("resources", "gpu_type"), f"no GPU type {kind!r} {where}; it has {', '.join(map(str, kinds))} "
                                  "(cluster.gpu_types: add a type there if the cluster has it)"))
    counts, gpus = cluster.get("gpu_counts"), resources.get("gpus")
    if isinstance(counts, list) and isinstance(gpus, int) and not isinstance(gpus, bool) and gpus and gpus not in counts:
        out.append(loaded.problem(("resources", "gpus"), f"{where.removeprefix('on ')} gives {' or '.join(map(str, counts))} GPUs per node "
                                  f"(cluster.gpu_counts), not {gpus}; ask for one of those"))
    return out


def _mapping(value: object) -> dict[str, t.Any]:
    return value if isinstance(value, dict) else {}


def _check_run(loaded: LoadedManifest, run: object) -> list[Problem]:
    if not isinstance(run, dict):
        return []
    # exactly one of commands, commands_file, grid, sweep: the schema says it (run's dependentSchemas, and else)
    out: list[Problem] = []
    commands = run.get("commands")
    for i, command in enumerate(commands if isinstance(commands, list) else []):
        if isinstance(command, str) and (quote := unclosed_quote(command)):
            out.append(loaded.problem(("run", "commands", i), _UNCLOSED[quote], level="warning"))
    grid = run.get("grid")
    if not isinstance(grid, dict):
        return out
    from .resolve import GridTasks, grid_axes, grid_placeholders

    template, parameters = grid.get("template"), grid.get("parameters")
    if isinstance(template, str) and isinstance(parameters, dict):
        try:
            names = grid_placeholders(template)
        except ValueError as e:
            return [*out, loaded.problem(("run", "grid", "template"), str(e))]
        if "{{{{" in template and "}}}}" in template:  # a literal {{ is escaped; a }} never needs to be
            out.append(loaded.problem(("run", "grid", "template"), "}} needs no escape, so }}}} stays }}}} in the commands; "
                                      "for a literal {{ … }} write {{{{ … }}", level="warning"))
        for name in names:
            if name not in parameters:
                out.append(loaded.problem(("run", "grid", "template"), f"placeholder {{{{ {name} }}}} has no parameter; parameters: {', '.join(parameters)}"))
        for name in parameters:
            if name not in names:
                out.append(loaded.problem(("run", "grid", "parameters", name), f"parameter {name!r} is not used in the template", key=True, level="warning"))
        zipped, zip_problems = _check_zip(loaded, grid.get("zip"), parameters)
        out += zip_problems
        count = 1
        for axis in grid_axes(parameters, zipped):
            values = parameters[axis[0]]
            count *= len(values) if isinstance(values, list) else 1
        if count > MAX_TASKS:
            out.append(loaded.problem(("run", "grid", "parameters"), f"the grid has {count:,} combinations; at most {MAX_TASKS:,} tasks are supported"))
        # the template's own quotes: each value is substituted as one quoted word, a plain one here
        quote = unclosed_quote(GridTasks(template, {name: ["x"] for name in names})[0])
        if quote:
            out.append(loaded.problem(("run", "grid", "template"), _UNCLOSED[quote], level="warning"))
    return out


def _check_zip(loaded: LoadedManifest, groups: object, parameters: dict[str, t.Any]) -> tuple[list[list[str]], list[Problem]]:
    """run.grid.zip: each group names parameters of the grid, each at most once in all groups,
    whose lists have one length. Returns the groups that passed (for the task count) and the problems."""
    out: list[Problem] = []
    good: list[list[str]] = []
    seen: dict[str, int] = {}
    for g, group in enumerate(groups if isinstance(groups, list) else []):
        if not isinstance(group, list) or not all(isinstance(name, str) for name in group):
            continue  # the schema's
        ok = True
        for m, name in enumerate(group):
            if name not in parameters:
                out.append(loaded.problem(("run", "grid", "zip", g, m), f"no parameter {name!r} to zip; parameters: {', '.join(parameters)}"))
                ok = False
            elif name in seen and seen[name] != g:
                out.append(loaded.problem(("run", "grid", "zip", g, m), f"{name!r} is already zipped in run.grid.zip[{seen[name]}]; "
                                          "a parameter belongs to one group (put the groups' names in one list to pair them all)"))
                ok = False
            seen.setdefault(name, g)
        lengths = {name: len(parameters[name]) for name in group if isinstance(parameters.get(name), list)}
        if ok and len(set(lengths.values())) > 1:
            described = ", ".join(f"{name} has {n:,}" for name, n in lengths.items())
            out.append(loaded.problem(("run", "grid", "zip", g), f"zipped lists need one length: {described} values; "
                                      "give them as many values each, or take the parameter out of the group"))
            ok = False
        if ok:
            good.append(group)
    return good, out


def _check_commands_file(loaded: LoadedManifest, refused: set[str]) -> list[Problem]:
    """run.commands_file: its own problems (read, encoding, CRLF), and each command checked with
    the rules of run.commands (the schema's command, unclosed quotes), located at FILE:line."""
    cf = loaded.commands_file
    if cf is None or "run.commands_file" in refused:  # a name the schema refused: one problem per value
        return []
    out = list(cf.problems)
    if any(p.level == "error" for p in out) and not cf.commands:
        return out  # unreadable: nothing more to say
    named = loaded.data["run"]["commands_file"]  # as written
    if not cf.commands:
        return [*out, loaded.problem(("run", "commands_file"), f"{named!r} holds no command: every line is blank or a comment (#)")]
    if len(cf.commands) > MAX_TASKS:
        return [*out, loaded.problem(("run", "commands_file"), f"{named!r} holds {len(cf.commands):,} commands; at most {MAX_TASKS:,} tasks are supported")]
    from .schema import load_schema, validator

    version = int(loaded.data["version"])  # checked before any rule runs
    root = load_schema(version)
    schema = root["properties"]["run"]["properties"]["commands"]["items"]
    quick = _quick_check(schema, root["$defs"])
    item_validator = validator(version).evolve(schema=schema)
    for i, (command, line) in enumerate(zip(cf.commands, cf.lines, strict=True)):
        if quick is None or not quick(command):
            errors = list(item_validator.iter_errors(command))
            if errors:
                e = errors[0]
                message = _message(e.validator, e.validator_value, e.instance, e.schema)
                out.append(Problem(cf.path, line, 1, f"run.commands_file[{i}]", message))
                continue
        if quote := unclosed_quote(command):
            out.append(Problem(cf.path, line, 1, f"run.commands_file[{i}]", _UNCLOSED[quote], "warning"))
    return out


_UNCLOSED = {
    "'": "unclosed ' quote: bash fails on it with a syntax error on the node (unexpected EOF while looking for matching '); "
         "close it, or write an apostrophe as \\' (or within double quotes: \"it's\")",
    '"': 'unclosed " quote: bash fails on it with a syntax error on the node (unexpected EOF while looking for matching "); '
         'close it, or write a literal " as \\"',
}
# Quoting that pairs up at once (no comment, no here-document): most commands, checked at C speed.
_PAIRED = re.compile(r"""(?:[^'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")*""", re.S)
# bash starts a comment only at the start of a word: after a blank or one of ;&|()<>
_COMMENT = re.compile(r"(?:^|(?<=[\s;&|()<>]))#")
_NOT_A_COMMENT = re.compile(r"(?<=[^\s;&|()<>])#")
_ANSI_C = re.compile(r"\$'(?:[^'\\]|\\.)*'", re.S)  # $'...': a backslash escapes a quote in it
_HERE_DOCUMENT = re.compile(r"(?<!<)<<(?!<)")


def unclosed_quote(command: str) -> str | None:
    """The quote (' or ") left open in `command`, as bash reads it; None when its quotes pair up.

    shlex reads the quoting, after three adjustments to bash's rules: `#` starts a comment only
    at the start of a word (`${#VAR}`, `a#b` hold none), `$'...'` may hold `\'`, and a command
    with a here-document is not judged (its body is not shell words). Not followed: `"$(...)"`
    holding double quotes of its own, such as "$(date +"%Y's")", is read as closing the
    outer quotes.
    """
    if "'" not in command and '"' not in command or _HERE_DOCUMENT.search(command):
        return None
    if "$'" in command:
        command = _ANSI_C.sub("_", command)
    if _PAIRED.fullmatch(command) and not _COMMENT.search(command):
        return None
    words = _NOT_A_COMMENT.sub("_", command)
    if _shlex_error(words) != "No closing quotation":  # "No escaped character", a final \, is fine in bash
        return None
    return "'" if _shlex_error(words + "'") is None else '"'  # a ' closes an open ', not an open "


def _shlex_error(words: str) -> str | None:
    lexer = shlex.shlex(words, posix=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        list(lexer)  # read to the end: shlex says what is unclosed only there
    except ValueError as e:
        return str(e)
    return None


def _check_subsets(loaded: LoadedManifest, subsets: object) -> list[Problem]:
    if not isinstance(subsets, list):
        return []
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for i, subset in enumerate(subsets):
        if not isinstance(subset, str):
            continue
        where = ("data", "subsets", i)
        parts = subset.split("/")
        if any(p in (".", "..") for p in parts):
            out.append(loaded.problem(where, f"{subset!r}: '.' and '..' are not allowed in a subset path"))
            continue
        if subset in seen:
            out.append(loaded.problem(where, f"{subset!r} is listed twice (first as item {seen[subset]})"))
            continue
        for other, j in seen.items():
            if subset.startswith(other + "/") or other.startswith(subset + "/"):
                inner, outer = (subset, other) if subset.startswith(other + "/") else (other, subset)
                out.append(loaded.problem(where, f"{inner!r} lies inside {outer!r} (item {j}); list only one of them"))
        seen[subset] = i
    return out


def _normal_target(target: str) -> str | None:
    """The target if it is in normal form (no '.', '..', '//' or trailing '/'), else None."""
    return target if posixpath.normpath(target) == target and not target.startswith("//") else None


def _check_targets(loaded: LoadedManifest, container: dict[str, t.Any], refused: set[str], code: object) -> list[Problem]:
    out: list[Problem] = []
    taken: dict[str, str] = {t: "mcompile's own bind" for t in OWN_TARGETS}
    workdir = container.get("workdir")
    candidates: list[tuple[tuple[str | int, ...], object]] = [(("container", "workdir"), workdir)]
    if isinstance(code, dict):  # the code's folder; the same as the working directory is one folder, not two binds
        target = code.get("target")
        if target is None and not isinstance(workdir, str):
            candidates.append((("code",), CODE_TARGET))  # the default target, reported at code:
        elif target != workdir:
            candidates.append((("code", "target"), target))
    binds = container.get("binds")
    if isinstance(binds, list):
        for i, bind in enumerate(binds):
            if isinstance(bind, dict):
                candidates.append((("container", "binds", i, "target"), bind.get("target")))
                source, source_at = bind.get("source"), ("container", "binds", i, "source")
                # one problem per value: a source the schema refused (relative) is not told this too
                if isinstance(source, str) and ("," in source or ":" in source) and format_path(source_at) not in refused:
                    out.append(loaded.problem(source_at, "a bind source cannot contain ',' or ':' (apptainer splits bind specs on them)"))
    for where, target in candidates:
        if not isinstance(target, str) or not target.startswith("/"):
            continue
        if _normal_target(target) is None:
            out.append(loaded.problem(where, f"{target!r} is not a normalised path (no '.', '..', '//' or trailing '/'); write {posixpath.normpath(target)!r}"))
            continue
        if target in SYSTEM_TARGETS or target.startswith(SYSTEM_TREES):
            out.append(loaded.problem(where, f"{target!r} is a system path; binding over it would break the container"))
            continue
        if target == DATA_TARGET or target.startswith(DATA_TARGET + "/"):
            out.append(loaded.problem(where, f"{target!r}: {DATA_TARGET} is reserved for data.subsets"))
            continue
        if target in taken:
            out.append(loaded.problem(where, f"{target!r} is already the target of {taken[target]}"))
            continue
        taken[target] = format_path(where) if where != ("code",) else f"code (its default target without container.workdir: {CODE_TARGET})"
    return out


def _check_bind_sources(loaded: LoadedManifest, data: dict[str, t.Any], refused: set[str]) -> list[Problem]:
    """Fields that become bind sources (or their prefix) cannot hold ',' or ':' (apptainer splits on them)."""
    fields: list[tuple[str, ...]] = [("cluster", "scratch"), ("cluster", "local_tmp"), ("outputs", "dir")]
    if _mapping(data.get("data")).get("stage") == "bind":
        fields.append(("data", "root"))
    out = []
    for path in fields:
        value = _mapping(data.get(path[0])).get(path[1])
        if isinstance(value, str) and ("," in value or ":" in value) and format_path(path) not in refused:
            out.append(loaded.problem(path, "cannot contain ',' or ':': the job binds a folder under it, and apptainer splits bind specs on them"))
    return out


def _check_sbatch_options(loaded: LoadedManifest, options: dict[str, t.Any]) -> list[Problem]:
    """Nothing left: the options mcompile sets (and their abbreviations) are refused by the
    schema's propertyNames, where editors see them too (`x-set-by` names each one's field)."""
    return []


def _check_env_names(loaded: LoadedManifest, data: dict[str, t.Any]) -> list[Problem]:
    out = []
    env, secrets = _mapping(data.get("env")), _mapping(data.get("secrets"))
    for section, names in (("env", env), ("secrets", secrets)):
        for name in names:
            if isinstance(name, str) and name.startswith(RESERVED_ENV_PREFIXES):
                out.append(loaded.problem((section, name), f"{name!r}: names starting with {', '.join(RESERVED_ENV_PREFIXES)} are set by mcompile and the runtime", key=True))
    for name in secrets:
        if name in env:
            out.append(loaded.problem(("secrets", name), f"{name!r} is both in env and in secrets", key=True))
    for name, value in env.items():
        if not isinstance(name, str) or name in secrets:
            continue
        if "wandb" in data and (name in WANDB_NAMES or name == "WANDB_API_KEY"):
            message = ("W&B's API key comes only through secrets: write secrets: {WANDB_API_KEY: {file: ~/.wandb_api_key}}"
                       if name == "WANDB_API_KEY" else f"{name} is set by wandb: (one W&B run a task); remove it from env")
            out.append(loaded.problem(("env", name), message, key=True))
        elif _SECRET_NAME.search(name):
            out.append(loaded.problem(("env", name), _secret_in_env_message(name), key=True, level="warning"))
        elif isinstance(value, str) and (expansion := _first_expansion(value)):
            out.append(loaded.problem(("env", name), _literal_env_message(name, value, expansion), level="warning"))
    return out


# Names that usually hold a secret: WANDB_API_KEY, HF_TOKEN, NGROK_AUTHTOKEN, AWS_SECRET_ACCESS_KEY,
# DB_PASSWORD. TOKEN only ends a word, so MAX_TOKENS and TOKENIZERS_PARALLELISM are not secrets.
_SECRET_NAME = re.compile(r"(?:^|_)API_?KEY$|(?:^|_)[A-Z0-9]*TOKEN(?:_|$)|SECRET|PASSW(?:OR)?D", re.IGNORECASE)
# What a shell would expand in a value: $NAME, ${...}, $(...). `$$` is matched only to be
# skipped, so that `a$$b` is not read as naming a variable b.
_EXPANSION = re.compile(r"\$\$|\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[^}]*\}?|\()")


def _first_expansion(value: str) -> str | None:
    return next((m[0] for m in _EXPANSION.finditer(value) if m[0] != "$$"), None)


def _secret_in_env_message(name: str) -> str:
    return (f"{name} looks like a secret, but an env value is kept in the manifest and in the job directory "
            f"(job.sbatch, resolved.json); put the value in a file only you can read (chmod 600) and write instead: "
            f"secrets: {{{name}: {{file: ~/.{name.lower()}}}}}")


def _literal_env_message(name: str, value: str, expansion: str) -> str:
    """The job passes env values literally (printf %q into --env-file): `PATH: /opt/bin:$PATH`
    gives the container a PATH without /usr/bin."""
    shown = "$(…)" if expansion == "$(" else expansion
    export = f'export {name}="{value}"' if len(value) <= 60 and not any(c in value for c in '"\\`') else f"export {name}=…"
    return (f"env values are passed literally: the container would get the text {_short.repr(value)} ({shown} is not expanded); "
            f"write the full value, or set it in the command instead: {export} && …")


def _count(value: object, default: int) -> int | None:
    """An integer field's value, its default when absent, None when the schema refused it."""
    if value is None:
        return default
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_launcher(loaded: LoadedManifest, data: dict[str, t.Any], refused: set[str]) -> list[Problem]:
    """How a task starts its processes must fit the resources it asks for."""
    run, res = _mapping(data.get("run")), _mapping(data.get("resources"))
    if "run.launcher" in refused:
        return []

    def count(key: str) -> int | None:
        return None if f"resources.{key}" in refused else _count(res.get(key), DEFAULT_RESOURCES[key])

    launcher = run.get("launcher", DEFAULT_LAUNCHER)
    nodes, per_node, gpus = count("nodes"), count("tasks_per_node"), count("gpus")
    processes = None if "run.processes_per_node" in refused else _count(run.get("processes_per_node"), 0) or None
    out: list[Problem] = []
    both = "run.launcher: srun (one container per SLURM task: Lightning, DDP) or torchrun (one container per node)"
    if launcher == "single":
        if nodes is not None and nodes > 1:
            out.append(loaded.problem(("resources", "nodes"), f"{nodes} nodes need {both}; the default launcher, single, starts the container once, on the first node"))
        if per_node is not None and per_node > 1:
            out.append(loaded.problem(("resources", "tasks_per_node"), f"{per_node} tasks per node need {both}; the default launcher, single, starts the container once"))
    if processes is not None and launcher != "torchrun":
        out.append(loaded.problem(("run", "processes_per_node"), f"processes_per_node applies to launcher: torchrun only (the launcher is {launcher})"))
    if launcher == "torchrun":
        if per_node is not None and per_node > 1:
            out.append(loaded.problem(("resources", "tasks_per_node"), "torchrun starts its own processes on each node: keep tasks_per_node at 1 and set run.processes_per_node"))
        if isinstance(processes, int) and gpus and processes != gpus:
            out.append(loaded.problem(("run", "processes_per_node"), f"{processes} processes per node with {gpus} GPUs per node: torchrun jobs usually run one process per GPU", level="warning"))
    if launcher == "srun" and gpus and per_node:
        if gpus % per_node:
            out.append(loaded.problem(("resources", "tasks_per_node"), f"{gpus} GPUs per node cannot be shared evenly by {per_node} tasks per node"))
        elif gpus != per_node:
            out.append(loaded.problem(("resources", "tasks_per_node"), f"{per_node} tasks per node with {gpus} GPUs per node: Lightning's SLURM detection expects one task per GPU (tasks_per_node: {gpus})", level="warning"))
    if launcher != "single" and "sweep" in run and nodes is not None and per_node is not None:
        world = world_size(launcher, nodes, per_node, processes_per_node(launcher, processes, gpus or 0))
        if world > 1:
            out.append(loaded.problem(("run", "launcher"), f"a W&B sweep cannot run {world} processes per task: each would start its own agent and take a different run; use launcher: single, one agent per task"))
    pack = None if "run.pack" in refused else _count(run.get("pack"), 1)
    if pack is not None and pack > 1:
        if launcher != "single":
            out.append(loaded.problem(("run", "pack"), f"pack runs its tasks one after the other, one container on one node each: launcher: single only "
                                      f"(the launcher is {launcher}); remove pack: each distributed task needs its own array task"))
        if "sweep" in run:
            out.append(loaded.problem(("run", "pack"), "a W&B sweep cannot be packed: its agents are meant to run side by side; remove pack "
                                      "(sweep.runs_per_agent gives each agent several runs, one after the other)"))
    if launcher != "single":
        for section in ("env", "secrets"):
            for name in _mapping(data.get(section)):
                if name in DISTRIBUTED_ENV:
                    out.append(loaded.problem((section, name), f"{name!r} is set by mcompile for launcher {launcher}", key=True))
    return out


def _check_requeue(loaded: LoadedManifest, resources: dict[str, t.Any], refused: set[str]) -> list[Problem]:
    requeue = resources.get("requeue")
    if not isinstance(requeue, dict) or "resources.requeue.before_end" in refused:
        return []
    before = requeue.get("before_end")
    if before is None:  # the default must fit the time limit too: SLURM would signal the task at once
        try:
            total, default = parse_time(resources["time"]), parse_time(DEFAULT_BEFORE_END)
        except (KeyError, ValueError):
            return []
        if default >= total:
            return [loaded.problem(("resources", "requeue"), f"before_end defaults to {DEFAULT_BEFORE_END}, which is not shorter "
                                   f"than resources.time ({resources['time']}): SLURM would signal the task as it starts; "
                                   "set before_end below the time limit, e.g. before_end: 1m", key=True)]
        return []
    try:
        seconds = parse_time(before)
    except ValueError as e:
        return [loaded.problem(("resources", "requeue", "before_end"), str(e))]
    out = _check_minutes_form(loaded, ("resources", "requeue", "before_end"), before)
    if seconds > MAX_SIGNAL_SECONDS:
        return [*out, loaded.problem(("resources", "requeue", "before_end"), f"SLURM signals at most {MAX_SIGNAL_SECONDS} seconds before the end; got {seconds}")]
    try:
        total = parse_time(resources["time"])  # a value the schema refused raises
    except (KeyError, ValueError):
        return out  # the time's own problem is reported where it is
    if seconds >= total:
        out.append(loaded.problem(("resources", "requeue", "before_end"), f"must be shorter than resources.time ({seconds} s is not less than {total} s)"))
    return out


def _amount(number: int, unit: str) -> str:
    return f"{number} {unit}" + ("" if number == 1 else "s")


def _check_minutes_form(loaded: LoadedManifest, path: tuple[str, ...], value: object) -> list[Problem]:
    """SLURM's MM:SS form (`1:30` is 1 minute 30 seconds): a warning, since it reads as hours
    and minutes, saying what SLURM makes of it, the form that says so without a warning, and
    how hours and minutes are written."""
    form = minutes_seconds(value)
    if form is None:
        return []
    minutes, seconds = form
    meaning = " ".join(_amount(n, unit) for n, unit in ((minutes, "minute"), (seconds, "second")) if n) or "0 seconds"
    message = f"SLURM reads {value} as {meaning} (MM:SS): write {format_human_time(minutes * 60 + seconds)} if you mean that"
    as_hours = minutes * 3600 + seconds * 60
    try:
        parse_time(as_hours // 60)
    except ValueError:
        return [loaded.problem(path, f"{message}; hours and minutes are written H:MM:SS", level="warning")]
    meant = " ".join(_amount(n, unit) for n, unit in ((minutes, "hour"), (seconds, "minute")) if n)
    return [loaded.problem(path, f"{message}; for {meant} write {minutes}:{seconds:02d}:00 or {format_human_time(as_hours)}",
                           level="warning")]
