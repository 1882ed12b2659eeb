"""The schema as other tools read it: check-jsonschema (CI, pre-commit) and yaml-language-server
(editors) agree with `mcompile validate` on every example and on the corpus (tests/cases).

Where they disagree, the rule is one the schema does not say; every such case is listed in
MCOMPILE_ONLY with the rule's name, and a case that starts or stops disagreeing fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import typing as t
from pathlib import Path

import pytest

from manifest_compiler.pipeline import check_file

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "experiment.v1.schema.json"
EXAMPLES = sorted((ROOT / "manifests").glob("*.yaml"))
CASES = ROOT / "tests" / "cases"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (bash scripts/setup.sh)")
    return str(path)


# Rules mcompile checks and the schema does not say, by name.
CROSS_FIELD = "a rule between fields or list items (JSON Schema compares no two values)"
CROSS_FILE = "extends: the other file is read and merged first (a schema sees one file)"
YAML = "YAML that JSON has no value for, or reads differently (4.0 and 1.0 are integers in JSON; no inf, nan)"
BOUNDS = "a bound on the value a unit spells (more than zero, at most 366 days or 64T), not on its digits"
PATHS = "a path rule of the semantic layer (system and reserved targets, normal form, '..', ',' and ':')"
NAMES = "reserved variable names (SLURM_, MCOMPILE_, APPTAINER, SINGULARITY)"
GRID = "grid template syntax and its placeholders"
SITE = "a site profile's facts (extends: site:NAME, read and merged first) against the manifest's request"
COMMANDS_FILE = "run.commands_file: the file it names is read and checked line by line (a schema sees one file)"
MCOMPILE_ONLY = {
    "bind-source-colon": PATHS,
    "bind-target-dev-child": PATHS,
    "bind-target-not-normalised": PATHS,
    "bind-target-proc": PATHS,
    "bind-target-same-as-workdir": CROSS_FIELD,
    "bind-target-scratch_storage": PATHS,
    "bind-target-under-data": PATHS,
    "bind-target-usr": PATHS,
    "bug-bind-target-duplicate": CROSS_FIELD,
    "code-default-target-taken": CROSS_FIELD,
    "code-target-system": PATHS,
    "bug-type-float-for-int": YAML,
    "commands-file-missing": COMMANDS_FILE,
    "data-build-job-without-archive": CROSS_FIELD,
    "commands-file-only-comments": COMMANDS_FILE,
    "commands-file-problems": COMMANDS_FILE,
    "bug-type-float-for-time-minutes": YAML,
    "bug-version-float": YAML,
    "env-SLURM_FOO": NAMES,
    "extends-base-invalid-yaml": CROSS_FILE,
    "extends-base-top-level-list": CROSS_FILE,
    "extends-cycle": CROSS_FILE,
    "extends-error-in-base": CROSS_FILE,
    "extends-missing-base": CROSS_FILE,
    "extends-missing-key-located-in-child": CROSS_FILE,
    "extends-self": CROSS_FILE,
    "extends-unknown-key-in-base": CROSS_FILE,
    "schema-extends-base-still-incomplete": CROSS_FILE,
    "gpu_type-without-gpus": CROSS_FIELD,
    "grid-jinja-comment": GRID,
    "grid-jinja-filter": GRID,
    "grid-jinja-for": GRID,
    "grid-placeholder-without-parameter": CROSS_FIELD,
    "grid-too-many-combinations": CROSS_FIELD,
    "grid-zip-parameter-in-two-groups": CROSS_FIELD,
    "grid-zip-unequal-lengths": CROSS_FIELD,
    "grid-zip-unknown-parameter": CROSS_FIELD,
    "site-account-required": SITE,
    "site-narval-time-too-long": SITE,
    "site-no-internet-sweep": SITE,
    "site-trillium-gpu-count": SITE,
    "launcher-single-two-nodes": CROSS_FIELD,
    "launcher-srun-gpus-not-divisible": CROSS_FIELD,
    "launcher-srun-sweep-and-reserved-env": CROSS_FIELD,
    "launcher-torchrun-tasks-per-node": CROSS_FIELD,
    "pack-torchrun": CROSS_FIELD,
    "pack-sweep": CROSS_FIELD,
    "pattern-mem-0G": BOUNDS,
    "pattern-mem-too-big": BOUNDS,
    "pattern-time-367d": BOUNDS,
    "pattern-time-zero-string": BOUNDS,
    "requeue-before-end-too-long": BOUNDS,
    "requeue-default-before-end-too-long": CROSS_FIELD,
    "secret-also-in-env": CROSS_FIELD,
    "subset-dotdot": PATHS,
    "subset-duplicate": CROSS_FIELD,
    "subset-nested": CROSS_FIELD,
    "workdir-etc": PATHS,
    "workdir-tmp": PATHS,
    "yaml-huge-float": YAML,
    "yaml-inf": YAML,
    "yaml-nan": YAML,
}
# Files check-jsonschema 0.39 cannot read at all (a traceback, or killed for memory): mcompile
# refuses each with one line; they are left out of its run.
CLIENT_CRASHES = {
    "bug-yaml-int-too-many-digits": "ValueError: Exceeds the limit (4300 digits) for integer string conversion",
    "bug-yaml-nesting-segfault": "RecursionError",
    "yaml-int-tag-on-string": "ValueError from ruamel's int constructor",
    "yaml-recursive-alias": "RecursionError",
    "yaml-very-deep-nesting": "RecursionError",
    "yaml-alias-bomb": "killed: the expanded document does not fit in memory",
}


def _corpus() -> list[Path]:
    files = [p / "manifest.yaml" for kind in ("valid", "invalid") for p in sorted((CASES / kind).iterdir())]
    return [p for p in files if p.is_file()] + EXAMPLES


def _case(path: Path) -> str:
    return path.parent.name if path.name == "manifest.yaml" else path.name


def _mcompile_refuses(path: Path) -> bool:
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        _, problems = check_file(path.name)
    finally:
        os.chdir(cwd)
    return any(p.level == "error" for p in problems)


def test_check_jsonschema_agrees_with_mcompile() -> None:
    tool = _tool("check-jsonschema")
    files = [p for p in _corpus() if _case(p) not in CLIENT_CRASHES]
    proc = subprocess.run(
        [tool, "--schemafile", str(SCHEMA), "-o", "json", *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(proc.stdout)
    refused = {e["filename"] for e in report["errors"]} | {e["filename"] for e in report["parse_errors"]}
    table = {}
    for path in files:
        ours, theirs = _mcompile_refuses(path), str(path) in refused
        if ours != theirs:
            table[_case(path)] = "mcompile only" if ours else "check-jsonschema only"
    assert table == {name: "mcompile only" for name in MCOMPILE_ONLY}
    # the examples and every valid case pass; base files too, on their own
    assert not refused & {str(p) for p in EXAMPLES}
    assert all(_case(p) in CLIENT_CRASHES or not _mcompile_refuses(p) for p in _corpus() if p.parent.parent.name == "valid")


def test_check_jsonschema_accepts_a_base_alone() -> None:
    """A base meant only to be extended passes the pre-commit hook's check on its own."""
    tool = _tool("check-jsonschema")
    bases = [CASES / "valid" / "schema-base-alone" / "manifest.yaml", CASES / "valid" / "schema-extends-base" / "base.yaml"]
    proc = subprocess.run([tool, "--schemafile", str(SCHEMA), *map(str, bases)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_jsonschema_checks_the_schema_against_its_metaschema() -> None:
    tool = _tool("check-jsonschema")
    proc = subprocess.run([tool, "--check-metaschema", str(SCHEMA)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- yaml-language-server over LSP (stdio) ------------------------------------


class LanguageServer:
    """A minimal LSP client: Content-Length framing, requests, and the notifications kept."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 0
        self.lock = threading.Condition()
        self.responses: dict[int, t.Any] = {}
        self.diagnostics: dict[str, list[dict[str, t.Any]]] = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _send(self, message: dict[str, t.Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            message = json.loads(stream.read(length))
            if "id" in message and "method" in message:  # a request from the server
                result: t.Any = None
                if message["method"] == "workspace/configuration":
                    result = [self.settings.get(item.get("section", ""), None) for item in message["params"]["items"]]
                self._send({"id": message["id"], "result": result})
                continue
            with self.lock:
                if "id" in message:
                    self.responses[message["id"]] = message
                elif message.get("method") == "textDocument/publishDiagnostics":
                    self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
                self.lock.notify_all()

    settings: dict[str, t.Any] = {"yaml": {"validate": True, "completion": True, "hover": True, "schemaStore": {"enable": False}}}

    def request(self, method: str, params: dict[str, t.Any], timeout: float = 20) -> t.Any:
        self.next_id += 1
        key = self.next_id
        self._send({"id": key, "method": method, "params": params})
        with self.lock:
            assert self.lock.wait_for(lambda: key in self.responses, timeout), f"no answer to {method}"
            return self.responses.pop(key).get("result")

    def notify(self, method: str, params: dict[str, t.Any]) -> None:
        self._send({"method": method, "params": params})

    def open(self, path: Path, text: str | None = None, timeout: float = 20) -> list[dict[str, t.Any]]:
        uri = path.as_uri()
        with self.lock:
            self.diagnostics.pop(uri, None)
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": 1, "text": path.read_text(encoding="utf-8") if text is None else text}})
        with self.lock:
            assert self.lock.wait_for(lambda: uri in self.diagnostics, timeout), f"no diagnostics for {path}"
            return self.diagnostics[uri]

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=5)
            self.notify("exit", {})
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a server that does not stop is killed (by its pid)
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="module")
def server() -> t.Iterator[LanguageServer]:
    tool = _tool("yaml-language-server")
    if shutil.which("node", path=f"{BIN.parent / 'node' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}") is None:
        pytest.skip("node is not installed (bash scripts/setup.sh)")
    ls = LanguageServer([tool, "--stdio"])
    ls.request("initialize", {"processId": os.getpid(), "rootUri": ROOT.as_uri(), "capabilities": {
        "workspace": {"configuration": True},
        "textDocument": {"completion": {"completionItem": {"snippetSupport": False}}, "publishDiagnostics": {}},
    }})
    ls.notify("initialized", {})
    ls.notify("workspace/didChangeConfiguration", {"settings": ls.settings})
    yield ls
    ls.close()


def _errors(diagnostics: list[dict[str, t.Any]]) -> list[str]:
    # yaml-language-server reports schema problems as severity 1 (error) or 2 (warning)
    found = sorted((d["range"]["start"]["line"], d["message"]) for d in diagnostics if d.get("severity", 1) <= 2)
    return [f"{line + 1}: {message}" for line, message in found]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_language_server_finds_nothing_wrong_in_an_example(server: LanguageServer, example: Path) -> None:
    assert _errors(server.open(example)) == []


def test_language_server_accepts_the_valid_corpus(server: LanguageServer, tmp_path: Path) -> None:
    modeline = f"# yaml-language-server: $schema={SCHEMA.as_uri()}\n"
    found = {}
    for case in sorted((CASES / "valid").iterdir()):
        for source in sorted(case.glob("*.yaml")):
            copy = tmp_path / case.name / source.name
            copy.parent.mkdir(exist_ok=True)
            text = source.read_text(encoding="utf-8-sig")
            copy.write_text(modeline + text, encoding="utf-8")
            errors = _errors(server.open(copy))
            if errors:
                found[f"{case.name}/{source.name}"] = errors
    assert found == LANGUAGE_SERVER_ONLY


# What yaml-language-server 1.25 refuses and mcompile reads (YAML, not the schema).
LANGUAGE_SERVER_ONLY = {
    "str-tag-number/manifest.yaml": ["15: Unresolved tag: tag:yaml.org,2002:float"],  # `!!float 3` (a core tag)
}


def _broken(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"broken-{len(list(tmp_path.iterdir()))}.yaml"  # a new document each time
    path.write_text(f"# yaml-language-server: $schema={SCHEMA.as_uri()}\n{body}", encoding="utf-8")
    return path


COMPLETE = """\
version: 1
name: demo
project: study
container:
  image: /images/app.sif
resources:
  time: 1h
  mem: {mem}
run:
  commands: [echo hi]
"""


def test_language_server_says_what_to_write_for_a_bad_value(server: LanguageServer, tmp_path: Path) -> None:
    path = _broken(tmp_path, COMPLETE.format(mem="16GB"))
    assert _errors(server.open(path)) == ["9: expected memory such as 4096M, 32G or 1T (a K, M, G or T suffix; no B)"]


def test_language_server_and_mcompile_agree_on_a_broken_file(server: LanguageServer, tmp_path: Path) -> None:
    body = COMPLETE.format(mem="4G").replace("time: 1h", "time: 3h30") + "cluster:\n  sbatch_options:\n    gres: gpu:2\n"
    path = _broken(tmp_path, body)
    errors = _errors(server.open(path))
    assert errors == [
        "8: expected a time such as 90m, 12h, 1d12h, 2:00:00 or 1-12:00:00 (minutes and seconds below 60; hours below 24 after a day count)",
        "14: expected an option that mcompile does not set itself (nor an abbreviation of one, which sbatch reads as that option)",
    ]
    _, problems = check_file(str(path))
    assert [p.line for p in problems] == [8, 14]


def test_language_server_two_run_kinds(server: LanguageServer, tmp_path: Path) -> None:
    path = _broken(tmp_path, COMPLETE.format(mem="4G") + "  sweep: {id: e/p/abc123, agents: 2}\n")
    assert _errors(server.open(path)) == ["12: expected exactly one of commands, commands_file, grid, sweep; remove all but one"]


def test_language_server_partial_files_need_no_keys(server: LanguageServer, tmp_path: Path) -> None:
    path = _broken(tmp_path, "version: 1\nbase: true\nname: shared\n")
    assert _errors(server.open(path)) == []
    path = _broken(tmp_path, "extends: base.yaml\nresources: {gpus: 1}\n")
    assert _errors(server.open(path)) == []
    path = _broken(tmp_path, "version: 1\nname: shared\n")
    assert "Missing property" in " ".join(_errors(server.open(path)))


def test_language_server_completes_keys_under_resources(server: LanguageServer, tmp_path: Path) -> None:
    text = COMPLETE.format(mem="4G").replace("  mem: 4G\n", "  mem: 4G\n  \n")
    path = _broken(tmp_path, text)
    server.open(path)
    line = text.splitlines().index("  ") + 1  # 0-based, after the modeline
    result = server.request("textDocument/completion", {"textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": 2}})
    items = result["items"] if isinstance(result, dict) else result
    labels = {item["label"] for item in items}
    assert {"cpus_per_task", "gpus", "gpu_type", "nodes", "requeue"} <= labels
    assert not any("mcompile experiment manifest" in label for label in labels)


def test_language_server_names_mapping_types_by_their_title(server: LanguageServer, tmp_path: Path) -> None:
    text = COMPLETE.format(mem="4G") + "env:\n  A: b\n"
    path = _broken(tmp_path, text)
    server.open(path)
    line = text.splitlines().index("env:") + 1
    hover = server.request("textDocument/hover", {"textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": 1}})
    shown = hover["contents"]["value"]
    assert shown.startswith("#### env: variables in the container\n")
    assert "mcompile experiment manifest, format version 1" not in shown


def test_language_server_offers_only_fields_under_container(server: LanguageServer, tmp_path: Path) -> None:
    """No completion item named after the document's title (what an untitled branch gave)."""
    text = COMPLETE.format(mem="4G").replace("  image: /images/app.sif\n", "  image: /images/app.sif\n  \n")
    path = _broken(tmp_path, text)
    server.open(path)
    line = text.splitlines().index("  ") + 1
    result = server.request("textDocument/completion", {"textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": 2}})
    items = result["items"] if isinstance(result, dict) else result
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert {item["label"] for item in items} == set(schema["properties"]["container"]["properties"]) - {"image"}

