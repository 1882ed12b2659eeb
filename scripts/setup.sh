#!/bin/bash
# Install everything mcompile's tests and local demo need on a fresh Debian 12 machine
# (run as root): the Debian packages of a local SLURM cluster, bubblewrap for the
# apptainer test double, shellcheck, rsync; then mcompile itself with its test extras.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  slurmctld slurmd slurm-client munge slurmdbd mariadb-server # a real local SLURM with accounting
  bubblewrap                                                  # tests/doubles/apptainer runs binds for real
  shellcheck rsync git ca-certificates
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e "^WARNING: Location" >&2 || true
python3 -c "import manifest_compiler, yaml, jsonschema, jinja2, deepdiff, pytest, hypothesis, hypothesis_jsonschema" ||
  { echo "setup: python packages missing after install" >&2; exit 1; }
echo "setup: ready" >&2
