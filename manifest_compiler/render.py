"""Render: JobPlan -> the files of a job directory ({relative path: content}). Pure.

The tasks and resolved.json are streamed (`StreamedFile`): their bytes are
produced in chunks when written or hashed, so a million tasks never sit in
memory as one string, a list of strings or a list of offsets.

Templates are jinja2 files in the package; they see only the plan. Every value the
job script interpolates goes through one of seven filters: `sh` quotes a literal word,
`shpath` a manifest path (its `$VAR`/`${VAR}` and a leading `~` expand on the compute
node, every other byte stays literal), `sbatch` an #SBATCH value; `word`, `num` and `dq` pass a
value unquoted only after checking that it is a plain word (a name, a subset, an enum),
an integer, or text that stays literal inside double quotes (a field name in a message);
`dqvars` passes mcompile's own text for double quotes whose only expansions are `${NAME}`s of
the job's variables (a log file name the plan makes). The launchers are template includes
(templates/launchers/), one per launcher, over the same hooks.
"""

from __future__ import annotations

import array
import functools
import hashlib
import itertools
import json
import math
import operator
import re
import shlex
import typing as t
from collections import abc
from json.encoder import encode_basestring

from .jobdir import BLOCK_SIZE, INDEX_WIDTH, PACKS, FileContent, StreamedFile
from .model import SCRATCH_TARGET, Resolved
from .plan import PACK_TASKS_VARIABLE, TASK_OFFSET_VARIABLE, VARIABLE, JobPlan, home_spelled
from .spool import Spool

if t.TYPE_CHECKING:
    from . import resolve

PLAN_TASKS_SHOWN = 20

_DQ_SPECIAL = re.compile(r'([\\"$`])')


def shell_path(path: str) -> str:
    """One double-quoted bash word: variables expand, nothing else does.

    No word splitting, globbing, command substitution or arithmetic can happen,
    whatever the path holds.
    """
    path = home_spelled(path)
    out, pos = [], 0
    for m in VARIABLE.finditer(path):
        out.append(_DQ_SPECIAL.sub(r"\\\1", path[pos : m.start()]))
        out.append("${" + (m.group(1) or m.group(2)) + "}")
        pos = m.end()
    out.append(_DQ_SPECIAL.sub(r"\\\1", path[pos:]))
    return '"' + "".join(out) + '"'


_SBATCH_SAFE = re.compile(r"[A-Za-z0-9._,:/=@%+-]+")


def sbatch_value(value: str) -> str:
    """A value for an `#SBATCH --opt=VALUE` line, as ONE word.

    sbatch splits #SBATCH lines at blanks and stops at `#` unless a value is
    double-quoted (with backslash and `"` escaped inside): unquoted, a value
    `x --time=7-00:00:00` would set a second option.
    """
    if _SBATCH_SAFE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_word(value: str) -> str:
    """One bash word holding exactly `value`, on one line even when the value has newlines.

    Printable text gets shlex's single quotes; text with control characters gets
    bash's $'...' quoting, so no value can put a line of its own into the script.
    """
    if value.isprintable():
        return shlex.quote(value)
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:  # the UTF-8 bytes: bash's \u escapes would depend on the job's locale
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "$'" + "".join(out) + "'"


# A word that is the same bare or inside double quotes in bash: no blank, quote, `$`, backtick,
# backslash, glob, redirection, `#`, `~` or `!`. The schema's patterns keep every value that
# reaches the template unfiltered (names, subsets, option names, enums) inside it; `word`
# checks that at render time, so a pattern loosened later fails loudly instead of writing shell.
_WORD = re.compile(r"[A-Za-z0-9_.,:/@%+=-]+")


def shell_safe_word(value: object) -> str:
    """`value` as it is, after checking that it is a plain word (see _WORD). Raises ValueError."""
    text = str(value)
    if isinstance(value, bool) or not _WORD.fullmatch(text):
        raise ValueError(f"{text!r} reached the job script as a bare word but is not one (a schema pattern let it through)")
    return text


_IN_DOUBLE_QUOTES = re.compile(r'[^$`"\\\n\r\x00]*')


def double_quoted_text(value: object) -> str:
    """`value` as it is, after checking that it means itself inside bash's double quotes (no `$`,
    backtick, `"`, backslash or line break): for the field names in messages. Raises ValueError."""
    text = str(value)
    if not _IN_DOUBLE_QUOTES.fullmatch(text):
        raise ValueError(f"{text!r} reached a double-quoted message of the job script but would not stay literal there")
    return text


_WORD_AND_VARS = re.compile(r"(?:[A-Za-z0-9_.,:/@%+=-]|\$\{[A-Za-z_][A-Za-z0-9_]*\})+")


def double_quoted_vars(value: object) -> str:
    """`value` as it is, after checking that it holds plain word characters (see _WORD) and `${NAME}`
    references only: inside bash's double quotes the references expand and nothing else happens.
    Raises ValueError."""
    text = str(value)
    if isinstance(value, bool) or not _WORD_AND_VARS.fullmatch(text):
        raise ValueError(f"{text!r} reached the job script as words and ${{NAME}} references but is not only those")
    return text


def shell_number(value: object) -> str:
    """An integer, as digits. Raises ValueError for anything else (a bool included)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} reached the job script as a number but is not an integer")
    return str(value)


def _bytecode_cache() -> t.Any:
    """jinja2's own bytecode cache in the user's cache folder; None where it cannot live.

    Compiling the templates costs more than rendering 10,000 tasks; the cache is
    keyed by each template's checksum, so it never serves a stale template.
    """
    import os

    import jinja2

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "mcompile", "jinja")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    return jinja2.FileSystemBytecodeCache(folder)


@functools.cache
def _environment() -> t.Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("manifest_compiler", "templates"),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters["sh"] = shell_word
    env.filters["sbatch"] = sbatch_value
    env.filters["shpath"] = shell_path
    env.filters["word"] = shell_safe_word
    env.filters["num"] = shell_number
    env.filters["dq"] = double_quoted_text
    env.filters["dqvars"] = double_quoted_vars
    return env


_CHUNK = 1 << 16  # characters of resolved.json per chunk
_BATCH = 4096  # tasks per chunk of tasks/commands and tasks/index
_INDEX_LINE = f"%0{INDEX_WIDTH}d\n".encode()  # bytes %-formatting: no str to encode
_TASKS_PATH = ("run", "tasks")
_JSON = json.JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False)
_T = t.TypeVar("_T")


def _json(value: t.Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _batches(items: t.Iterable[_T]) -> t.Iterator[list[_T]]:
    it = iter(items)
    while batch := list(itertools.islice(it, _BATCH)):
        yield batch


class TaskBytes(t.NamedTuple):
    """What the one pass over the tasks makes and learns: no task is formatted twice.

    `spool` holds tasks/commands as made (in memory up to spool.MEMORY, then in an
    unnamed temporary file): tasks/commands and resolved.json's task list are read back
    from it. `ends` costs 8 bytes a task (not a Python object a task): 8 MB for a million.
    """

    size: int  # bytes of tasks/commands
    ends: array.array[int]  # 0, then where each command's line ends in tasks/commands
    json_size: int  # bytes of the tasks as JSON strings (quotes included), summed
    blocks: bytes  # tasks/blocks: the SHA-256 of each BLOCK_SIZE bytes of tasks/commands, a line each
    spool: Spool  # tasks/commands
    plain: bytes  # per batch of _BATCH commands: 1 where their lines need no JSON escaping


# The bytes json.dumps(ensure_ascii=False) escapes in a string (every other byte of UTF-8 text
# it writes as is): a batch of commands without any, and with no newline inside a command,
# becomes JSON by adding quotes around each line.
_JSON_ESCAPED = b'"\\' + bytes(range(0x00, 0x0A)) + bytes(range(0x0B, 0x20))


def survey_tasks(tasks: t.Iterable[str]) -> TaskBytes:
    """Make tasks/commands (spooled), hash its blocks and measure tasks/index and resolved.json, in one pass.

    A grid whose tasks need no JSON escaping (GridTasks.json_plain) gives its text a run of
    values at a time (GridTasks.text_batches): no Python string a task.
    """
    ends = array.array("Q", [0])
    json_size = 0
    blocks: list[str] = []
    block, in_block = hashlib.sha256(), 0
    spool = Spool()
    plain = bytearray()

    def made(data: bytes, lengths: t.Iterable[int]) -> None:
        """Spool one batch's bytes, hash them block by block, and add the offsets of its tasks."""
        nonlocal block, in_block
        spool.write(data)
        view = memoryview(data)
        while view:
            take = min(len(view), BLOCK_SIZE - in_block)
            block.update(view[:take])
            in_block, view = in_block + take, view[take:]
            if in_block == BLOCK_SIZE:
                blocks.append(block.hexdigest())
                block, in_block = hashlib.sha256(), 0
        offsets = itertools.accumulate(map(operator.add, lengths, itertools.repeat(1)), initial=ends[-1])
        next(offsets)
        ends.extend(offsets)

    if getattr(tasks, "json_plain", False):
        for text, lengths in t.cast("resolve.GridTasks", tasks).text_batches(_BATCH):
            data = text.encode()
            ascii_only = len(data) == len(text)  # then a task has as many bytes as characters
            made(data, lengths if ascii_only else (len(line.encode()) for line in text.split("\n")[:-1]))
            json_size += len(data) + len(lengths)  # each line: its bytes and two quotes, no newline
        plain = bytearray(b"\1" * -(-(len(ends) - 1) // _BATCH))
    else:
        for batch in _batches(tasks):
            batch.append("")
            text = "\n".join(batch)
            data = text.encode()
            batch.pop()
            ascii_only = len(data) == len(text)
            made(data, map(len, batch) if ascii_only else (len(c.encode()) for c in batch))
            plain.append(data.count(b"\n") == len(batch) and len(data.translate(None, _JSON_ESCAPED)) == len(data))
            if plain[-1]:
                json_size += len(data) + len(batch)
            else:
                quoted = "".join(map(encode_basestring, batch))
                json_size += len(quoted) if ascii_only else len(quoted.encode())
    if in_block or not blocks:
        blocks.append(block.hexdigest())
    return TaskBytes(ends[-1], ends, json_size, "".join(f"{b}\n" for b in blocks).encode(), spool, bytes(plain))


def _spooled(survey: TaskBytes) -> t.Iterator[tuple[int, bytes]]:
    """The spooled tasks/commands, _BATCH commands at a time: (number of commands, their lines)."""
    ends, spool = survey.ends, survey.spool
    for i in range(0, len(ends) - 1, _BATCH):
        j = min(i + _BATCH, len(ends) - 1)
        yield j - i, spool.read(ends[i], ends[j])


def command_chunks(survey: TaskBytes) -> t.Iterator[bytes]:
    """tasks/commands, in chunks: each command followed by a newline (read back, never formatted again)."""
    for _, data in _spooled(survey):
        yield data


def index_chunks(ends: t.Sequence[int]) -> t.Iterator[bytes]:
    """tasks/index, in chunks: N+1 fixed-width offsets, where each command starts and the end."""
    for i in range(0, len(ends), _BATCH):
        batch = tuple(ends[i : i + _BATCH])
        yield (_INDEX_LINE * len(batch)) % batch


def encode_tasks(tasks: t.Sequence[str]) -> tuple[bytes, bytes]:
    """tasks/commands (each command then a newline) and tasks/index (N+1 fixed-width offsets)."""
    survey = survey_tasks(tasks)
    return b"".join(command_chunks(survey)), b"".join(index_chunks(survey.ends))


def resolved_json_chunks(resolved: Resolved, survey: TaskBytes | None = None) -> t.Iterator[bytes]:
    """resolved.json in chunks: the bytes of `json.dumps(resolved, indent=2, sort_keys=True,
    ensure_ascii=False) + "\\n"`, with run.tasks streamed, never a list: from the bytes of
    tasks/commands that `survey` made, or else formatted from the task sequence.
    """
    buf: list[str] = []
    size = 0
    task_list = _task_list_pieces if survey is None else functools.partial(_spooled_task_list_pieces, survey)
    for piece in _json_pieces(resolved, 0, (), task_list):
        buf.append(piece)
        size += len(piece)
        if size >= _CHUNK:
            yield "".join(buf).encode()
            buf, size = [], 0
    buf.append("\n")
    yield "".join(buf).encode()


def resolved_json_size(resolved: Resolved, tasks: TaskBytes) -> int:
    """The length of resolved.json, from the rest of the document and the measured tasks."""
    rest = sum(len(piece.encode()) for piece in _json_pieces(resolved, 0, (), lambda _tasks, _level: iter(())))
    n, level = len(tasks.ends) - 1, len(_TASKS_PATH)
    if n == 0:
        return rest + len("[]\n")
    inner = "\n" + "  " * (level + 1)
    return rest + len("[" + inner) + tasks.json_size + (n - 1) * len("," + inner) + len("\n" + "  " * level + "]") + len("\n")


TaskListPieces = t.Callable[[t.Sequence[str], int], t.Iterator[str]]
_SCALARS = (str, int, float, type(None))  # bool is an int


def _task_list_pieces(tasks: t.Sequence[str], level: int) -> t.Iterator[str]:
    return _list_pieces(tasks, level, encode_basestring)


def _spooled_task_list_pieces(survey: TaskBytes, tasks: t.Sequence[str], level: int) -> t.Iterator[str]:
    """run.tasks as JSON from tasks/commands' bytes: quotes added around whole batches of
    lines where nothing needs escaping, each command through json's encoder otherwise."""
    if len(survey.ends) != len(tasks) + 1:
        raise AssertionError(f"the survey holds {len(survey.ends) - 1} tasks, the document {len(tasks)}")
    ends = survey.ends

    def bodies(separator: str) -> t.Iterator[str]:
        for i, (count, data) in enumerate(_spooled(survey)):
            if survey.plain[i]:
                yield '"' + data[:-1].decode().replace("\n", '"' + separator + '"') + '"'
                continue
            first = ends[i * _BATCH]  # a command with a newline or a character JSON escapes: split at its own offsets
            lines = (data[ends[k] - first : ends[k + 1] - first - 1].decode() for k in range(i * _BATCH, i * _BATCH + count))
            yield separator.join(map(encode_basestring, lines))

    return _json_list(level, bodies, empty=not tasks)


def _list_pieces(items: t.Sequence[t.Any], level: int, encode: t.Callable[[t.Any], str]) -> t.Iterator[str]:
    return _json_list(level, lambda separator: (separator.join(map(encode, batch)) for batch in _batches(items)), empty=not items)


def _json_list(level: int, bodies: t.Callable[[str], t.Iterable[str]], *, empty: bool) -> t.Iterator[str]:
    """A JSON list as json.dumps(indent=2) writes it at `level`, from batches of its items, each
    batch already joined with the separator it is given."""
    if empty:
        yield "[]"
        return
    inner = "\n" + "  " * (level + 1)
    yield "[" + inner
    separator = "," + inner
    for i, body in enumerate(bodies(separator)):
        yield (separator if i else "") + body
    yield "\n" + "  " * level + "]"


def _scalar_json(value: t.Any) -> str:
    """One scalar as json.dumps writes it (json.encoder's rules, in its order)."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _json_pieces(value: t.Any, level: int, path: tuple[str, ...], task_list: TaskListPieces) -> t.Iterator[str]:
    # json.dumps with an indent writes a value nested at depth d exactly as it writes
    # it alone, with 2*d spaces after each newline (a JSON string holds no raw newline)
    if path == _TASKS_PATH and isinstance(value, abc.Sequence) and not isinstance(value, str):
        yield from task_list(value, level)
        return
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        inner = "\n" + "  " * (level + 1)
        for i, key in enumerate(sorted(value)):
            yield ("{" if i == 0 else ",") + inner + encode_basestring(key) + ": "
            yield from _json_pieces(value[key], level + 1, (*path, key), task_list)
        yield "\n" + "  " * level + "}"
        return
    if isinstance(value, list):  # a grid parameter may hold a million values: no generator per value
        kinds = set(map(type, value))
        if all(issubclass(k, str) for k in kinds):
            yield from _list_pieces(value, level, encode_basestring)
            return
        if all(issubclass(k, _SCALARS) for k in kinds):
            yield from _list_pieces(value, level, _scalar_json)
            return
    pad = "\n" + "  " * level
    for chunk in _JSON.iterencode(value):
        yield chunk.replace("\n", pad) if level else chunk


SmallFile = t.Literal["job.sbatch", "mounts.json", "plan.txt"]  # always bytes


class RenderedFiles(abc.Mapping[str, FileContent]):
    """The files of a job directory by relative path, each rendered when first asked for.

    `mcompile plan` reads plan.txt only, so it never streams the tasks.
    """

    def __init__(self, makers: dict[str, t.Callable[[], FileContent]]) -> None:
        self._makers = makers
        self._made: dict[str, FileContent] = {}

    @t.overload
    def __getitem__(self, path: SmallFile) -> bytes: ...

    @t.overload
    def __getitem__(self, path: str) -> FileContent: ...

    def __getitem__(self, path: str) -> FileContent:
        if path not in self._made:
            self._made[path] = self._makers[path]()
        return self._made[path]

    def __iter__(self) -> t.Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


def render_job(plan: JobPlan) -> RenderedFiles:
    """Every generated file of the job directory, by relative path.

    job.sbatch, mounts.json and plan.txt are bytes; resolved.json and the tasks are
    `StreamedFile`s, whatever their size.
    """
    env = _environment()
    tasks = plan.tasks
    n = len(tasks)

    @functools.cache
    def survey() -> TaskBytes:
        return survey_tasks(tasks)

    def render(template: str, **extra: t.Any) -> bytes:
        context = {"plan": plan, "ntasks": n, "index_width": INDEX_WIDTH, "shown_tasks": _shown_tasks(tasks),
                   "scratch_target": SCRATCH_TARGET, "offset_variable": TASK_OFFSET_VARIABLE,
                   "pack_variable": PACK_TASKS_VARIABLE, "packs_dir": PACKS, **extra}
        return t.cast(str, env.get_template(template).render(context)).encode()

    return RenderedFiles({
        # the script checks tasks/blocks against its hash, and its command's block against
        # tasks/blocks: one pass over the tasks, which also measures resolved.json and finds
        # the offsets of tasks/index
        "job.sbatch": lambda: render("job.sbatch.j2", blocks_sha256=hashlib.sha256(survey().blocks).hexdigest(),
                                     block_size=BLOCK_SIZE),
        "mounts.json": lambda: _json([m.as_dict() for m in plan.mounts]),
        "plan.txt": lambda: render("plan.txt.j2"),
        "resolved.json": lambda: StreamedFile(lambda: resolved_json_chunks(plan.resolved, survey()),
                                              size=resolved_json_size(plan.resolved, survey())),
        "tasks/commands": lambda: StreamedFile(lambda: command_chunks(survey()), size=survey().size),
        "tasks/index": lambda: StreamedFile(lambda: index_chunks(survey().ends), size=(n + 1) * (INDEX_WIDTH + 1)),
        "tasks/blocks": lambda: survey().blocks,
    })


def _shown_tasks(tasks: t.Sequence[str]) -> list[tuple[int | None, str]]:
    if len(tasks) <= PLAN_TASKS_SHOWN:
        return list(enumerate(tasks))
    head = PLAN_TASKS_SHOWN - 2
    return [*enumerate(tasks[:head]), (None, ""), (len(tasks) - 1, tasks[-1])]
