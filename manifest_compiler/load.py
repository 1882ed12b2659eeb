"""Load: path -> LoadedManifest (merged data + the YAML node trees for locating problems).

YAML is read with YAML 1.2 core-schema meaning, not PyYAML's YAML 1.1 defaults:
only true/false are booleans, `1e-3` is a float, `1:30:00` and dates stay strings,
only core tags are accepted (nothing is ever constructed from a `!!python/...` tag),
duplicate keys are errors, and alias expansion is bounded. We compose the node tree
with libyaml (when available) and construct plain data ourselves, so every value
keeps the line and column it came from.
"""

from __future__ import annotations

import math
import os
import re
import typing as t

import yaml

from . import sites
from .commands_file import MAX_BYTES as MAX_COMMANDS_FILE_BYTES
from .commands_file import CommandsFile, parse_commands_file
from .errors import ManifestError, Problem, format_path, not_utf8
from .model import RUN_KINDS

try:  # libyaml is ~10x faster; the pure-Python parser gives the same nodes.
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader

# What aliases may add to a document (see _check_size). Real manifests use a few
# aliases for shared settings; an alias bomb is far above both bounds and is
# refused before anything walks the expanded tree.
MAX_ALIAS_VALUES = 1_000_000  # values that aliases add beyond the nodes written in the file
MAX_DEPTH = 64
MAX_FILE_BYTES = 16 * 1024 * 1024  # a manifest, or a file it extends; a 1,000,000-task grid needs a few KiB
MAX_EXPANDED_CHARS = 4 * MAX_FILE_BYTES  # text of all scalars once aliases are expanded
MAX_NUMBER_DIGITS = 100
_TOO_DEEP = f"nesting deeper than {MAX_DEPTH} levels"


def _libyaml_bounds_nesting() -> bool:
    """Whether libyaml stops at its own nesting limit (1,000 levels, libyaml 0.2.6 and later).

    Then its recursive composer is safe on any file, and the nesting bound is checked on the
    node tree; with an older libyaml, a file of 60,000 nested `[` overflows the C stack
    (seen with PyYAML 6.0.1, libyaml 0.2.5), so the event parser checks it first.
    """
    if _BaseLoader is not getattr(yaml, "CSafeLoader", None):
        return False  # the pure-Python composer recurses in Python: scan first
    try:
        from yaml import _yaml

        version = tuple(int(part) for part in _yaml.get_version_string().split(".")[:3])
    except (ImportError, AttributeError, ValueError):
        return False
    return version >= (0, 2, 6)

_NESTING_BOUNDED = _libyaml_bounds_nesting()

_PLAIN = "tag:mcompile:plain"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_CORE_SCALAR_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+\Z")
_INT8 = re.compile(r"0o[0-7]+\Z")
_INT16 = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z|\.(?:nan|NaN|NAN)\Z")


class SourceInt(int):
    """An int that remembers how it was written (`0x10`, `010`), for substitution."""

    text: str


class SourceFloat(float):
    """A float that remembers how it was written (`1e-3`), for substitution."""

    text: str


def scalar_text(value: object) -> str:
    """The text a scalar contributes to a command line: as written in the YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = getattr(value, "text", None)
    if text is not None:
        return str(text)
    return str(value)


class _ComposeLoader(_BaseLoader):  # type: ignore[misc]
    """Composes nodes only; tags of plain scalars are left for `_construct` to resolve."""

    def resolve(self, kind: type, value: t.Any, implicit: t.Any) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


class Source(t.NamedTuple):
    """One YAML file of a manifest's extends chain."""

    path: str  # as shown to the user
    raw: bytes
    root: yaml.Node
    data: dict[str, t.Any]


class LoadedManifest(t.NamedTuple):
    """The merged manifest data and where each part of it came from."""

    path: str
    data: dict[str, t.Any]
    sources: list[Source]  # the manifest first, then what it extends, in order
    commands_file: CommandsFile | None = None  # run.commands_file, read (None: the run has none)

    def locate(self, path: t.Sequence[str | int], *, key: bool = False) -> tuple[str, int, int]:
        """File, line and column of the node at `path` (of its key with `key=True`).

        With `extends`, the value at a path comes from the first file of the chain
        that has the whole path; where none has it (a missing key), the deepest
        existing parent wins, the extending file first.
        """
        best: tuple[int, str, yaml.Node] | None = None
        for source in self.sources:
            depth, node = _walk(source.root, path, key=key)
            if depth == len(path):
                return _position(source.path, node)
            if best is None or depth > best[0]:
                best = (depth, source.path, node)
        assert best is not None
        return _position(best[1], best[2])

    def problem(self, path: t.Sequence[str | int], message: str, *, key: bool = False,
                level: t.Literal["error", "warning"] = "error") -> Problem:
        file, line, col = self.locate(path, key=key)
        return Problem(file, line, col, format_path(path), message, level)




def _position(file: str, node: yaml.Node) -> tuple[str, int, int]:
    return file, node.start_mark.line + 1, node.start_mark.column + 1


def _walk(node: yaml.Node, path: t.Sequence[str | int], *, key: bool) -> tuple[int, yaml.Node]:
    depth = 0
    for i, part in enumerate(path):
        nxt = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for knode, vnode in node.value:
                if knode.value == part:
                    nxt = knode if key and i == len(path) - 1 else vnode
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            break
        node, depth = nxt, depth + 1
    return depth, node


class Reader:
    """Where manifests come from: files by default; `diff` reads git revisions the same way."""

    def read(self, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of `path`, at most `limit` + 1 (the reader of the file refuses more: a huge
        file is never read whole). Raises OSError (its strerror is shown to the user)."""
        with open(path, "rb") as fh:
            return fh.read(limit + 1)

    def resolve(self, including: str, ref: str) -> str:
        """The path an `extends: ref` in the file `including` names. Raises OSError."""
        return os.path.normpath(os.path.join(os.path.dirname(including), os.path.expanduser(ref)))

    def identity(self, path: str) -> str:
        """Equal for two paths naming the same file (cycle detection)."""
        return os.path.realpath(path)

    def label(self, path: str) -> str:
        """How the file is named in problems."""
        return path


FILES = Reader()


def load_manifest(path: str, *, reader: Reader = FILES) -> LoadedManifest:
    """Read a manifest and everything it extends; merge them.

    Raises:
        ManifestError: the file or a base cannot be read or parsed, or the
            extends chain is broken. Every problem is located.
    """
    sources: list[Source] = []
    places: list[tuple[str, Reader]] = []  # where each source was read from (reader paths, not labels), and by what
    top = reader  # the manifest's own reader; a site profile, and what it extends, are files here
    seen: list[str] = []
    current = path
    ref: tuple[Source, str] | None = None  # the file and extends value that named `current`
    while True:
        identity = reader.identity(current)
        if identity in seen:
            assert ref is not None
            chain = " -> ".join([*(s.path for s in sources), reader.label(current)])
            raise ManifestError([_extends_problem(ref[0], f"extends cycle: {chain}")])
        seen.append(identity)
        try:
            raw = reader.read(current)
        except OSError as e:
            reason = e.strerror or str(e)
            if ref is None:
                raise ManifestError([Problem(reader.label(current), 0, 0, "", f"cannot read: {reason}")]) from e
            raise ManifestError([_extends_problem(ref[0], f"cannot read {ref[1]!r} ({reader.label(current)}): {reason}")]) from e
        source = parse_source(reader.label(current), raw)
        sources.append(source)
        places.append((current, reader))
        base = source.data.get("extends")
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ManifestError([_extends_problem(source, "expected a file path (a non-empty string)")])
        ref = (source, base)
        try:
            if sites.is_site(base):  # a profile on this host, whatever reads the manifest (a git revision too)
                current, reader = sites.site_path(base), FILES
            else:
                current = reader.resolve(current, base)
        except OSError as e:
            raise ManifestError([_extends_problem(source, e.strerror or str(e))]) from e

    data = sources[-1].data
    for source in reversed(sources[:-1]):
        data = merge(data, source.data)
    if len(sources) > 1:
        # extends is resolved (kept in sources); `base: true` marks only the file that says
        # it: a manifest extending a base is complete unless it is a base itself
        data = {k: v for k, v in data.items() if k not in ("extends", "base")}
        if "base" in sources[0].data:
            data["base"] = sources[0].data["base"]
    loaded = LoadedManifest(path=top.label(path), data=data, sources=sources)
    run = data.get("run")
    if isinstance(run, dict) and isinstance(run.get("commands_file"), str) and run["commands_file"]:
        loaded = loaded._replace(commands_file=_read_commands_file(loaded, places))
    return loaded


def _read_commands_file(loaded: LoadedManifest, places: list[tuple[str, Reader]]) -> CommandsFile:
    """run.commands_file, read relative to the file of the chain that names it (as extends).
    A file that cannot be read is a problem at run.commands_file, reported by validate."""
    ref = loaded.data["run"]["commands_file"]
    including, reader = next(place for source, place in zip(loaded.sources, places, strict=True)
                             if isinstance(source.data.get("run"), dict) and "commands_file" in source.data["run"])
    try:
        path = reader.resolve(including, ref)
        raw = reader.read(path, limit=MAX_COMMANDS_FILE_BYTES)
    except OSError as e:
        problem = loaded.problem(("run", "commands_file"), f"cannot read {ref!r}: {e.strerror or e}")
        return CommandsFile(ref, b"", [], [], [problem])
    return parse_commands_file(reader.label(path), raw)


BASE_REFUSED = "a base manifest (base: true), meant only to be extended; compile a manifest that extends it"


def refuse_base(loaded: LoadedManifest) -> None:
    """Raise for a manifest marked `base: true`: it validates as partial, but never compiles.

    Raises:
        ManifestError: located at the `base` key.
    """
    if loaded.data.get("base") is True:
        raise ManifestError([loaded.problem(("base",), BASE_REFUSED, key=True)])


def _extends_problem(source: Source, message: str) -> Problem:
    _, node = _walk(source.root, ("extends",), key=False)
    file, line, col = _position(source.path, node)
    return Problem(file, line, col, "extends", message)




def merge(base: dict[str, t.Any], over: dict[str, t.Any], path: tuple[str, ...] = ()) -> dict[str, t.Any]:
    """Deep merge for `extends`: mappings merge (`over` wins), lists and scalars replace."""
    out = dict(base)
    # `run` holds exactly one kind: an extending file that names one replaces the base's
    # choice instead of merging into a manifest with two kinds of run
    if path == ("run",) and any(kind in over for kind in RUN_KINDS):
        for kind in RUN_KINDS:
            out.pop(kind, None)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, (*path, k))
        else:
            out[k] = v
    return out


def parse_source(path: str, raw: bytes) -> Source:
    """Parse one YAML file into data with core-schema meaning.

    Raises:
        ManifestError: with one located problem.
    """
    if len(raw) > MAX_FILE_BYTES:
        raise ManifestError([Problem(path, 0, 0, "", f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB; "
                                     "a manifest of that size is refused (use a grid for many tasks)")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError([not_utf8(path, raw, e)]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        pos = text.index("\x00")
        line = text.count("\n", 0, pos) + 1
        raise ManifestError([Problem(path, line, pos - text.rfind("\n", 0, pos), "", "NUL byte in file")])
    # One parse where libyaml bounds its own nesting (see _NESTING_BOUNDED); the event scan
    # runs only where it must: for an older libyaml, or a file that holds a `!`.
    non_specific = _scan(path, text) if not _NESTING_BOUNDED or "!" in text else set()
    loader = _ComposeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        if "maximum nesting depth" in str(getattr(e, "problem", "")):
            _scan(path, text, yaml.SafeLoader)  # raises at our own limit, located
        raise ManifestError([_yaml_problem(path, e, text)]) from None
    finally:
        loader.dispose()
    if root is None:
        raise ManifestError([Problem(path, 1, 1, "", "the file is empty; expected a mapping (version: 1, name: ...)")])
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        line, col = root.start_mark.line + 1, root.start_mark.column + 1
        raise ManifestError([Problem(path, line, col, "", f"expected a mapping at the top level, found {kind}")])
    aliased = "*" in text  # no alias without a `*`: nothing to bound, no node shared
    if aliased:
        _check_size(path, root)
    problems: list[Problem] = []
    data = _Constructor(path, problems, non_specific, memo=aliased).construct(root, ())
    if problems:
        raise ManifestError(problems)
    return Source(path=path, raw=raw, root=root, data=data)


def _scan(path: str, text: str, loader: type = _BaseLoader) -> set[tuple[int, int]]:
    """Check nesting depth with libyaml's event parser, before anything recursive runs.

    libyaml's composer (and ours) recurse once per level: a file of 60,000 nested
    `[` would overflow the C stack. The event parser does not recurse. The scan
    also returns where scalars carry the non-specific tag `!` (which YAML 1.2
    makes strings, but libyaml hands to the resolver as if they were plain).
    Syntax errors are left to the composer, which reports them, but for the
    nesting limit of newer libyaml (PyYAML 6.0.3 and later): its scanner reads
    ahead and stops at 1,000 levels before the parser has handed over the 65th,
    so the file is scanned again by PyYAML's pure-Python parser, which has no
    limit of its own, to report the level where ours is crossed.
    """
    depth = 0
    non_specific: set[tuple[int, int]] = set()
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ManifestError([_node_problem(path, event, _TOO_DEEP)])
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent) and event.tag == "!" and event.start_mark is not None:
                non_specific.add((event.start_mark.line, event.start_mark.column))
    except yaml.YAMLError as e:
        if loader is not yaml.SafeLoader and "maximum nesting depth" in str(getattr(e, "problem", "")):
            return _scan(path, text, yaml.SafeLoader)
        return non_specific  # the composer reports syntax errors, located
    return non_specific


def _yaml_problem(path: str, e: yaml.YAMLError, text: str) -> Problem:
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        char = e.character if isinstance(e.character, str) else chr(e.character)
        return Problem(path, line, col, "", f"invalid YAML: the character U+{ord(char):04X} is not allowed in YAML "
                       "(write it as an escape in a double-quoted string)")
    if not isinstance(e, yaml.MarkedYAMLError):
        return Problem(path, 0, 0, "", f"invalid YAML: {' '.join(str(e).split())}")
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else 0
    col = mark.column + 1 if mark else 0
    last = text.count("\n") + 1  # the line after a final newline exists in editors
    if line > last:  # libyaml's end-of-stream mark lies past a last line without newline
        line, col = last, len(text) - (text.rfind("\n") + 1) + 1
    message = " ".join(part for part in (e.context, e.problem) if part) or "invalid YAML"
    if "\\t" in message or (mark is not None and text[mark.index : mark.index + 1] == "\t"):
        message += " (tabs are not allowed for indentation; use spaces)"
    return Problem(path, line, col, "", f"invalid YAML: {message}")


def _check_size(path: str, root: yaml.Node) -> None:
    """Refuse alias bombs and recursive aliases before anything walks the expanded tree.

    What aliases add is bounded twice: in values (a billion laughs) and in
    characters (a few aliases of one long string). What the file holds without
    aliases is bounded by MAX_FILE_BYTES already. Nesting is bounded on the way,
    in document order, so that this walk never recurses deeper than MAX_DEPTH.
    """
    sizes: dict[int, tuple[int, int]] = {}  # node -> (values, characters) once expanded
    active: set[int] = set()

    def size(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ManifestError([_node_problem(path, node, "recursive alias: a node contains itself")])
        active.add(key)
        values, chars = 1, 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            chars = len(node.value)
        if children and depth > MAX_DEPTH:
            raise ManifestError([_node_problem(path, node, _TOO_DEEP)])
        for child in children:
            v, c = size(child, depth + 1)
            values, chars = values + v, chars + c
        if values - len(sizes) > MAX_ALIAS_VALUES or chars > MAX_EXPANDED_CHARS:
            raise ManifestError([_node_problem(
                path, node,
                f"aliases expand the document beyond {MAX_ALIAS_VALUES:,} values or {MAX_EXPANDED_CHARS // 2**20} MiB "
                "of text (an alias bomb?); refused",
            )])
        active.discard(key)
        sizes[key] = (values, chars)
        return values, chars

    size(root, 1)


def _tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _node_problem(path: str, node: yaml.Node | yaml.Event, message: str) -> Problem:
    mark = node.start_mark
    return Problem(path, mark.line + 1, mark.column + 1, "", message) if mark else Problem(path, 0, 0, "", message)


class _Constructor:
    def __init__(self, path: str, problems: list[Problem], non_specific: set[tuple[int, int]], *, memo: bool) -> None:
        self.path = path
        self.problems = problems
        self.non_specific = non_specific  # positions of scalars tagged `!`: strings
        self.memo: dict[int, t.Any] | None = {} if memo else None  # only a file with aliases shares nodes

    def error(self, node: yaml.Node, where: tuple[str | int, ...], message: str) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.path, m.line + 1, m.column + 1, format_path(where), message))

    def construct(self, node: yaml.Node, where: tuple[str | int, ...]) -> t.Any:
        # Aliases share the constructed object: cheap, and bounded by _check_size.
        memo = self.memo
        if memo is not None and id(node) in memo:
            return memo[id(node)]
        if isinstance(node, yaml.ScalarNode):
            value: t.Any = self.scalar(node, where)
        else:
            if len(where) >= MAX_DEPTH:  # this collection is one level deeper than its path
                raise ManifestError([_node_problem(self.path, node, _TOO_DEEP)])
            if isinstance(node, yaml.MappingNode):
                value = self.mapping(node, where)
            else:
                value = self.sequence(t.cast(yaml.SequenceNode, node), where)
        if memo is not None:
            memo[id(node)] = value
        return value

    def mapping(self, node: yaml.MappingNode, where: tuple[str | int, ...]) -> dict[str, t.Any]:
        if node.tag != _MAP:
            self.error(node, where, f"tag {_tag(node.tag)} is not allowed here (only YAML 1.2 core tags)")
        out: dict[str, t.Any] = {}
        first: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.error(knode, where, "a key must be a plain value, not a list or mapping")
                continue
            if knode.tag not in (_PLAIN, _STR):
                self.error(knode, where, f"tag {_tag(knode.tag)} is not allowed on a key")
                continue
            name = knode.value
            if name == "<<" and knode.tag == _PLAIN:
                self.error(knode, (*where, name), "merge keys (<<) are not part of YAML 1.2; use `extends` or repeat the keys")
                continue
            if name in first:
                prev = first[name].start_mark
                self.error(knode, (*where, name), f"duplicate key {name!r} (first defined at line {prev.line + 1})")
                continue
            first[name] = knode
            out[name] = self.construct(vnode, (*where, name))
        return out

    def sequence(self, node: yaml.SequenceNode, where: tuple[str | int, ...]) -> list[t.Any]:
        if node.tag != _SEQ:
            self.error(node, where, f"tag {_tag(node.tag)} is not allowed here (only YAML 1.2 core tags)")
        return [self.construct(child, (*where, i)) for i, child in enumerate(node.value)]

    def scalar(self, node: yaml.ScalarNode, where: tuple[str | int, ...]) -> t.Any:
        text = node.value
        tag = node.tag
        if tag == _STR:
            return text
        if tag == _PLAIN:
            if (node.start_mark.line, node.start_mark.column) in self.non_specific:
                return text
            return _resolve_plain(text, node, self, where)
        if tag not in _CORE_SCALAR_TAGS:
            self.error(node, where, f"tag {_tag(tag)} is not allowed (only YAML 1.2 core tags: !!str, !!int, !!float, !!bool, !!null)")
            return None
        value = _resolve_plain(text, node, self, where)
        want = tag.rsplit(":", 1)[1]
        got = {bool: "bool", type(None): "null", SourceInt: "int", SourceFloat: "float"}.get(type(value), "str")
        if want == "float" and got == "int":
            f = SourceFloat(value)
            f.text = text
            return f
        if got != want:
            self.error(node, where, f"{text!r} is not a valid !!{want}")
            return None
        return value


def _resolve_plain(text: str, node: yaml.Node, ctor: _Constructor, where: tuple[str | int, ...]) -> t.Any:
    if _NULL.match(text):
        return None
    if len(text) > MAX_NUMBER_DIGITS and (_INT10.match(text) or _FLOAT.match(text)):
        ctor.error(node, where, f"a number of {len(text):,} digits; at most {MAX_NUMBER_DIGITS} are allowed")
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT10.match(text):
        i = SourceInt(text)
    elif _INT8.match(text):
        i = SourceInt(text[2:], 8)
    elif _INT16.match(text):
        i = SourceInt(text[2:], 16)
    else:
        if _FLOAT.match(text):
            f = SourceFloat(text)
        elif _SPECIAL_FLOAT.match(text):
            ctor.error(node, where, f"{text} is not a finite number; not allowed in a manifest")
            return None
        else:
            return text
        if not math.isfinite(f):
            ctor.error(node, where, f"{text} is out of range for a number")
            return None
        f.text = text
        return f
    i.text = text
    return i
