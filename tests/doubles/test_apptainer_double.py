"""Tests of the apptainer TEST DOUBLE (tests/doubles/apptainer) itself.

They run real sandboxes with bubblewrap, so they need `bwrap` (Debian package
bubblewrap) and are skipped, with that reason, where it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DOUBLE = HERE / "apptainer"

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bwrap not found: the apptainer test double needs the Debian package bubblewrap",
)


from helpers import make_test_image as images  # noqa: E402

WRITE_ARGS_RUNSCRIPT = """#!/bin/bash
i=0
for arg in "$@"; do printf '%s' "$arg" > "/out/arg.$i"; i=$((i + 1)); done
"""
WANDB = "#!/bin/sh\nprintf 'wandb stand-in:%s\\n' \"$*\"\n"
TRICKY_ARGS = [
    """python train.py --name "it's" 'a "b"' $HOME `id` \\n\\ end\\""",
    "ends with a backslash \\",
    "line one\nline two\n\n",
    "a,b,c --bind=x:y",
    "  leading and trailing spaces  ",
    "unicode: é ü 日本 🚀 and tab\there",
    "$(touch /out/pwned) ; rm -rf / ; echo $((1+1))",
    "",
    "-not-an-option",
]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return Path(
        images.make_image(
            tmp_path / "app.sif", {"usr/local/bin/wandb": WANDB, "opt/app/train.py": "print(1)\n"}
        )
    )


@pytest.fixture
def host_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("APPTAINER_DOUBLE_LOG", "TERM")}
    env["HOME"] = str(home)
    return env


Runner = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def apptainer(host_env: dict[str, str], tmp_path: Path) -> Runner:
    def run(
        *args: str | Path, program: Path = DOUBLE, **extra_env: str
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(program), *map(str, args)],
            env={**host_env, **extra_env},
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            check=False,
        )

    return run


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    """Write NAME=VALUE lines exactly as the generated job script does (printf %q)."""
    script = 'for n in "$@"; do printf \'%s=%q\\n\' "$n" "${!n}"; done'
    result = subprocess.run(
        ["bash", "-c", script, "bash", *values], env=values, capture_output=True, check=True
    )
    path.write_bytes(result.stdout)
    return path


def test_version(apptainer: Runner) -> None:
    result = apptainer("--version")
    assert result.returncode == 0
    assert result.stdout == b"apptainer version 1.2.4-testdouble\n"


def test_run_passes_arguments_byte_exact(apptainer: Runner, tmp_path: Path, out: Path) -> None:
    img = images.make_image(tmp_path / "args.sif", runscript=WRITE_ARGS_RUNSCRIPT)
    result = apptainer("run", "--cleanenv", "--bind", f"{out}:/out", img, *TRICKY_ARGS)
    assert result.returncode == 0, result.stderr
    for i, arg in enumerate(TRICKY_ARGS):
        assert (out / f"arg.{i}").read_bytes() == arg.encode()
    assert not (out / "pwned").exists()


def test_default_runscript_runs_first_argument_as_bash(
    apptainer: Runner, image: Path, out: Path
) -> None:
    command = "printf '%s' \"$((6 * 7)) $APPTAINER_NAME\" > /out/answer"
    result = apptainer("run", "--bind", f"{out}:/out", image, command)
    assert result.returncode == 0, result.stderr
    assert (out / "answer").read_text() == "42 app.sif"


def test_default_runscript_changes_to_workdir(
    apptainer: Runner, image: Path, out: Path, tmp_path: Path
) -> None:
    env_file = write_env_file(tmp_path / "env", {"WORKDIR": "/workdir"})
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    args = ["--cleanenv", "--env-file", env_file, "-B", f"{out}:/out", "-B", f"{workdir}:/workdir"]
    result = apptainer("run", *args, image, "pwd > /out/pwd")
    assert result.returncode == 0, result.stderr
    assert (out / "pwd").read_text() == "/workdir\n"


def test_exec_runs_command_with_arguments(apptainer: Runner, image: Path, out: Path) -> None:
    result = apptainer(
        "exec",
        f"--bind={out}:/out",
        image,
        "/bin/sh",
        "-c",
        'printf "%s|" "$@" > /out/x',
        "sh",
        "a b",
        "c",
    )
    assert result.returncode == 0, result.stderr
    assert (out / "x").read_text() == "a b|c|"


def test_rw_bind_is_writable_and_visible_on_host(apptainer: Runner, image: Path, out: Path) -> None:
    result = apptainer(
        "exec",
        "--bind",
        f"{out}:/scratch_storage:rw",
        image,
        "sh",
        "-c",
        "echo ckpt > /scratch_storage/c.pt",
    )
    assert result.returncode == 0, result.stderr
    assert (out / "c.pt").read_text() == "ckpt\n"


def test_ro_bind_is_not_writable(apptainer: Runner, image: Path, tmp_path: Path, out: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "w.bin").write_text("w")
    script = (
        "cat /weights/w.bin > /out/read; echo x > /weights/new 2>/dev/null; echo $? > /out/status"
    )
    result = apptainer(
        "exec",
        "--bind",
        f"{weights}:/weights:ro",
        "--bind",
        f"{out}:/out",
        image,
        "sh",
        "-c",
        script,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "read").read_text() == "w"
    assert (out / "status").read_text() != "0\n"
    assert not (weights / "new").exists()


def test_nested_bind_targets(apptainer: Runner, image: Path, tmp_path: Path, out: Path) -> None:
    data, subset = tmp_path / "data", tmp_path / "subset"
    (data / "imagenet" / "train").mkdir(parents=True)
    subset.mkdir()
    (data / "top.txt").write_text("top")
    (subset / "img.jpg").write_text("jpg")
    binds = [
        "--bind",
        f"{data}:/data:ro",
        "--bind",
        f"{subset}:/data/imagenet/train:ro",
        "--bind",
        f"{out}:/out",
    ]
    result = apptainer(
        "exec", *binds, image, "sh", "-c", "cat /data/top.txt /data/imagenet/train/img.jpg > /out/x"
    )
    assert result.returncode == 0, result.stderr
    assert (out / "x").read_text() == "topjpg"


def test_bind_over_tmp_and_home_wins(
    apptainer: Runner, image: Path, tmp_path: Path, out: Path, host_env: dict[str, str]
) -> None:
    tmp, home = tmp_path / "tmp_J_T", tmp_path / "home_overlay"
    tmp.mkdir()
    home.mkdir()
    home_dir = host_env["HOME"]
    flags = ["--cleanenv", "--contain", "--no-home", "--writable-tmpfs"]
    binds = ["--bind", f"{tmp}:/tmp", "--bind", f"{home}:{home_dir}", "--bind", f"{out}:/out"]
    result = apptainer("run", *flags, *binds, image, 'echo t > /tmp/t; echo h > "$HOME/h"')
    assert result.returncode == 0, result.stderr
    assert (tmp / "t").read_text() == "t\n"
    assert (home / "h").read_text() == "h\n"


def test_missing_bind_source_fails_255(apptainer: Runner, image: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = apptainer("exec", "--bind", f"{missing}:/data", image, "true")
    assert result.returncode == 255
    assert str(missing).encode() in result.stderr
    assert b"no such file or directory" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "--fakeroot", "IMG", "true"],
        ["exec", "-e", "IMG", "true"],
        ["shell", "IMG"],
        ["--debug", "exec", "IMG", "true"],
        ["exec", "--bind", "/tmp:/a,/tmp:/b", "IMG", "true"],
        ["exec", "--bind", "/tmp:/a:rbind", "IMG", "true"],
    ],
)
def test_unsupported_input_fails_255(apptainer: Runner, image: Path, args: list[str]) -> None:
    result = apptainer(*[str(image) if a == "IMG" else a for a in args])
    assert result.returncode == 255
    assert b"apptainer (test double): unsupported option: " in result.stderr


def test_image_must_be_a_tar_named_sif(apptainer: Runner, tmp_path: Path) -> None:
    fake = tmp_path / "real.sif"
    fake.write_bytes(b"#!/usr/bin/env run-singularity\nSIF_MAGIC")
    assert apptainer("exec", fake, "true").returncode == 255
    assert apptainer("exec", tmp_path / "missing.sif", "true").returncode == 255
    not_sif = images.make_image(tmp_path / "app.tar")
    assert apptainer("exec", not_sif, "true").returncode == 255


def test_run_without_runscript_fails_255(apptainer: Runner, tmp_path: Path) -> None:
    img = images.make_image(tmp_path / "bare.sif", runscript=None)
    result = apptainer("run", img, "true")
    assert result.returncode == 255
    assert b"runscript" in result.stderr


def test_exec_of_missing_command_fails_255(apptainer: Runner, image: Path) -> None:
    result = apptainer("exec", image, "no-such-program")
    assert result.returncode == 255
    assert b"no-such-program" in result.stderr


def test_cleanenv_hides_host_env_and_env_file_values_arrive_exactly(
    apptainer: Runner, image: Path, tmp_path: Path, out: Path, host_env: dict[str, str]
) -> None:
    values = {
        "WANDB_API_KEY": "s3cr'et\"$HOME`x`\\",
        "MULTI": "line 1\nline 2 with 'quote' and $dollar\n",
        "SLURM_JOB_ID": "123",
        "UNICODE": "é 日本",
        "EMPTY": "",
    }
    env_file = write_env_file(tmp_path / "job.env", values)
    binds = ["--bind", f"{out}:/out"]
    result = apptainer(
        "exec", "--cleanenv", "--env-file", env_file, *binds, image, "env", "-0", HOST_SECRET="leak"
    )
    assert result.returncode == 0, result.stderr
    env = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if item)
    for name, value in values.items():
        assert env[name] == value
    expected = set(values) | {"PATH", "HOME", "LANG", "APPTAINER_CONTAINER", "APPTAINER_NAME"}
    assert set(env) - {"PWD"} == expected
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == host_env["HOME"]
    assert env["APPTAINER_CONTAINER"] == str(image)


def test_host_env_passes_without_cleanenv(apptainer: Runner, image: Path) -> None:
    result = apptainer(
        "exec", image, "sh", "-c", 'printf %s "$HOST_VISIBLE"', HOST_VISIBLE="yes it is"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"yes it is"


def test_unreadable_env_file_fails_255(apptainer: Runner, image: Path, tmp_path: Path) -> None:
    result = apptainer("exec", "--env-file", tmp_path / "missing.env", image, "true")
    assert result.returncode == 255
    assert b"missing.env" in result.stderr


def test_image_program_is_on_path_and_host_os_is_usable(apptainer: Runner, image: Path) -> None:
    result = apptainer(
        "exec",
        "--cleanenv",
        image,
        "sh",
        "-c",
        "wandb agent --count 1 e/p/s && cat /opt/app/train.py && bash --version >/dev/null",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"wandb stand-in:agent --count 1 e/p/s\nprint(1)\n"


def test_pwd_sets_working_directory(apptainer: Runner, image: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    workdir.mkdir()
    result = apptainer("exec", "--pwd", "/workdir", "--bind", f"{workdir}:/workdir", image, "pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"/workdir\n"
    assert apptainer("exec", "--pwd", "/nowhere", image, "true").returncode == 255


def test_exit_status_propagates(apptainer: Runner, image: Path) -> None:
    assert apptainer("run", image, "exit 7").returncode == 7
    assert apptainer("exec", image, "sh", "-c", "exit 1").returncode == 1
    assert apptainer("exec", image, "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_contain_hides_host_tmp_and_root_is_read_only(apptainer: Runner, image: Path) -> None:
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="double-marker-") as marker:
        probe = f"test -e {marker.name} && echo tmp; touch /new 2>/dev/null && echo root-rw; true"
        shared = apptainer("exec", image, "sh", "-c", probe).stdout
        contained = apptainer("exec", "--contain", image, "sh", "-c", probe).stdout
        writable = apptainer("exec", "--contain", "--writable-tmpfs", image, "sh", "-c", probe)
    assert (shared, contained, writable.stdout) == (b"tmp\n", b"", b"root-rw\n")


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


# `sleep & wait`, not a foreground `sleep`: bash defers a trapped SIGINT that
# arrives while a foreground child runs and drops it if that child exits normally
# (it assumes the child handled it), which would make the SIGINT case flaky.
TRAP_SCRIPT = """
trap 'echo "$1" > /out/got; exit 0' "$1"
touch /out/ready
while :; do sleep 0.05 & wait $!; done
"""


def trap_command(image: Path, out: Path, signal_name: str) -> list[str]:
    """The double running TRAP_SCRIPT, which waits for `signal_name` and records it in /out/got."""
    return [str(DOUBLE), "exec", "--bind", f"{out}:/out", str(image), "bash", "-c", TRAP_SCRIPT, "bash", signal_name]


@pytest.mark.parametrize(
    "sig", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name
)
def test_signal_to_double_reaches_command(
    image: Path, out: Path, host_env: dict[str, str], sig: signal.Signals
) -> None:
    name = sig.name.removeprefix("SIG")
    with subprocess.Popen(trap_command(image, out, name), env=host_env, cwd=out) as proc:
        try:
            wait_for(out / "ready")
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
    assert (out / "got").read_text() == f"{name}\n"


def test_signal_to_whole_process_group_does_not_kill_command(
    image: Path, out: Path, host_env: dict[str, str]
) -> None:
    """Like SLURM signalling every process of the step: bwrap must not die first."""
    with subprocess.Popen(trap_command(image, out, "TERM"), env=host_env, cwd=out, start_new_session=True) as proc:
        try:
            wait_for(out / "ready")
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
    assert (out / "got").read_text() == "TERM\n"


def test_log_records_request_without_env_values(
    apptainer: Runner, image: Path, tmp_path: Path, out: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    env_file = write_env_file(
        tmp_path / "job.env", {"WANDB_API_KEY": "topsecret", "SLURM_PROCID": "0"}
    )
    args = [
        "run",
        "--nv",
        "--cleanenv",
        "--env-file",
        str(env_file),
        "--bind",
        f"{out}:/out",
        "--bind",
        f"{tmp_path}:/ro:ro",
    ]
    result = apptainer(*args, "--pwd", "/out", image, "true", APPTAINER_DOUBLE_LOG=str(log))
    assert result.returncode == 0, result.stderr
    result = apptainer(
        "exec", image, "true", program=HERE / "singularity", APPTAINER_DOUBLE_LOG=str(log)
    )
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    assert "topsecret" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["argv"][1:] == [*args, "--pwd", "/out", str(image), "true"]
    assert first["subcommand"] == "run" and first["image"] == str(image)
    assert first["binds"] == [
        {"source": str(out), "target": "/out", "mode": "rw"},
        {"source": str(tmp_path), "target": "/ro", "mode": "ro"},
    ]
    assert first["env_file_names"] == ["WANDB_API_KEY", "SLURM_PROCID"]
    assert first["flags"] == ["--nv", "--cleanenv"]
    assert first["pwd"] == "/out"
    assert (second["program"], second["subcommand"], second["binds"]) == ("singularity", "exec", [])


def test_make_image_cli(tmp_path: Path, apptainer: Runner) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho from-cli\n")
    tool.chmod(0o755)
    target = tmp_path / "cli.sif"
    helper = [
        sys.executable,
        str(HERE.parent / "helpers" / "make_test_image.py"),
        str(target),
        "--add",
        f"opt/tool={tool}",
    ]
    subprocess.run(helper, check=True, timeout=30)
    result = apptainer("run", target, "/opt/tool")
    assert (result.returncode, result.stdout) == (0, b"from-cli\n")
