#!/bin/bash
# The README's main job: set up this machine, start a local SLURM, prepare a scratch folder
# (image, data, secret), compile and submit manifests/demo.yaml, wait, and show the results.
# Leaves the cluster running for `mcompile runs`; stop it with: bash scripts/slurm-dev.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
demo=${MCOMPILE_DEMO_DIR:-/tmp/mcompile-demo}

bash scripts/setup.sh
export PATH=$repo/.venv/bin:$PATH # mcompile, from the virtual environment setup.sh made
export MCOMPILE_SLURM_DIR=${MCOMPILE_SLURM_DIR:-/tmp/mcompile-slurm}
bash scripts/slurm-dev.sh up
eval "$(bash scripts/slurm-dev.sh env)"

# What a cluster account would already have: $SCRATCH with an image, data and a key file.
export SCRATCH=$demo/scratch
books=$SCRATCH/mcompile-demo/data/corpus/books
mkdir -p "$SCRATCH/containers" "$SCRATCH/secrets" "$books"
python3 tests/helpers/make_test_image.py "$SCRATCH/containers/demo.sif"
printf 'Alice was beginning to get very tired of sitting by her sister on the bank\n' >"$books/alice.txt"
printf 'Call me Ishmael. Some years ago, never mind how long precisely\n' >"$books/moby-dick.txt"
printf 'Well, Prince, so Genoa and Lucca are now just family estates of the Buonapartes\n' >"$books/war and peace.txt"
(umask 077 && printf 'demo-token-%s\n' "$RANDOM" >"$SCRATCH/secrets/demo_token")

# Apptainer is not installable here: use the project's test double, which runs the
# bind-mount plan for real with bubblewrap. On a cluster the real apptainer is on PATH.
export PATH=$repo/tests/doubles:$PATH

mcompile validate manifests/demo.yaml
mcompile plan manifests/demo.yaml
job=$(mcompile manifests/demo.yaml --submit --runs "$demo/runs" | tail -n 1)
echo "demo: waiting for job $job" >&2
for _ in $(seq 120); do
  [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
  sleep 1
done
mcompile runs demo --runs "$demo/runs"
for out in "$SCRATCH/mcompile-demo/demo/${job}"_*; do
  printf '%s: %s\n' "${out##*/}" "$(cat "$out/count.txt")"
done
cat "$SCRATCH/mcompile-demo/hpc_outputs/demo_${job}"_*.out
echo "demo: done. Stop the cluster with: bash scripts/slurm-dev.sh down" >&2
