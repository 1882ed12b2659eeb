"""`mcompile import` then `mcompile compile --submit` on a real local SLURM: the job_submitter.sh
user's path from start to finish, with a commands file of lines the old scripts broke.

slurmctld schedules the array, slurmd runs job.sbatch, which stages the data archive and runs
each command through the apptainer **test double** (tests/doubles/apptainer, bubblewrap:
apptainer cannot be installed here). The outputs the commands write prove that each reached
bash in the container byte for byte; the values are written by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster import Cluster

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
from helpers.make_test_image import make_image  # noqa: E402

KEY = "wandb-key-0123456789-must-not-leak"

# experiment_configurations.txt, saved with CRLF line endings (as from a Windows editor)
COMMANDS = (
    "# one task per line; this comment and the blank line are skipped\r\n"
    "\r\n"
    "printf '[%s]\\n' --tags=a,b,c \"it's\" 'say \"hi\"' back\\\\slash '$HOME' > /scratch_storage/args\r\n"
    "cat /data/ds/rows.txt > /scratch_storage/args; \\\r\n"
    "  printf '[%s]\\n' \"${MCOMPILE_TASK}\" \"$(printf '%s' \"$WANDB_API_KEY\" | wc -c)\" >> /scratch_storage/args\r\n"
    "printf '%s\\n' 'single\\back' \"dq\\\\back\" x,y > /scratch_storage/args\r\n"
)
OUTPUTS = [
    "[--tags=a,b,c]\n[it's]\n[say \"hi\"]\n[back\\slash]\n[$HOME]\n",
    f"rows of ds\n[1]\n[{len(KEY)}]\n",
    "single\\back\ndq\\back\nx,y\n",
]


def test_an_imported_invocation_runs_every_command_byte_for_byte(tmp_path: Path, dbd_cluster: Cluster) -> None:
    scratch, home, project = tmp_path / "scratch", tmp_path / "home", tmp_path / "seed-project"
    for d in (scratch / "containers", scratch / "seed-project" / "data" / "ds", home, project):
        d.mkdir(parents=True)
    (scratch / "seed-project" / "data" / "ds" / "rows.txt").write_text("rows of ds\n")
    make_image(scratch / "containers" / "app.sif", {"opt/app/marker": "image\n"})
    (home / "wandb_credentials.txt").write_text(KEY + "\n")
    (home / "wandb_credentials.txt").chmod(0o600)
    (project / "experiment_configurations.txt").write_bytes(COMMANDS.encode())
    env = {**dbd_cluster.env, "SCRATCH": str(scratch), "HOME": str(home), "NO_COLOR": "1",
           "PATH": f"{ROOT / 'tests' / 'doubles'}:{dbd_cluster.env['PATH']}",
           "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}

    def mcompile(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "manifest_compiler", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)

    imported = mcompile("import", "--output", "experiment.yaml", "--", "--cpus", "1", "--mem", "256M", "--time", "0-00:05:00",
                        "--exp-name", "tricky", "--data", "data/ds", "--singularity-container", "$SCRATCH/containers/app.sif",
                        "--workdir", "/workdir")
    assert imported.returncode == 0, imported.stderr
    assert "wrote experiment.yaml" in imported.stderr
    assert mcompile("validate", "experiment.yaml").returncode == 0

    compiled = mcompile("compile", "experiment.yaml", "--runs", "runs", "--submit")
    assert compiled.returncode == 0, compiled.stderr
    assert "CRLF line endings" in compiled.stderr  # the CRs are removed, and said
    run_dir, job = compiled.stdout.split()
    assert (project / run_dir / "tasks" / "commands").read_bytes().count(b"\n") == 3
    dbd_cluster.wait_gone(job, timeout=120)
    rows = dbd_cluster.sacct_until(job, "JobID,State,ExitCode", lambda r: len(r) == 3, extra=("-X",))
    assert sorted(rows) == [[f"{job}_{i}", "COMPLETED", "0:0"] for i in range(3)]
    for task, expected in enumerate(OUTPUTS):
        assert (scratch / "seed-project" / "tricky" / f"{job}_{task}" / "args").read_text() == expected, task
        log = (scratch / "seed-project" / "hpc_outputs" / f"tricky_{job}_{task}.out").read_text()
        assert KEY not in log
    # the key never reached the job's record (the old scripts put it in --export)
    record = dbd_cluster.run("sacct", "-j", job, "-n", "-P", "-o", "SubmitLine,WorkDir", check=False).stdout
    assert KEY not in record
