#!/usr/bin/env bash
# The Python virtual environment the serve tests (and the AWS backend's moto tests) use:
# ${CARGO_TARGET_DIR:-target}/py-venv with scripts/py-requirements.txt installed.
# Created or refreshed only when it is missing or the requirements changed.
# Prints the venv's python on its last line; `source` it to get LIGHTBOX_TEST_PYTHON exported.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
venv="$target/py-venv"
req="$root/scripts/py-requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if ! command -v python3 >/dev/null 2>&1; then
  echo "py-env: python3 is needed (apt-get install python3 python3-venv)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "py-env: installing $(grep -cv '^#' "$req") Python packages into $venv" >&2
  if ! python3 -m venv "$venv" 2>/dev/null; then
    echo "py-env: python3 -m venv failed; installing python3-venv" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$stamp"
fi
LIGHTBOX_TEST_PYTHON="$venv/bin/python"
export LIGHTBOX_TEST_PYTHON
echo "$LIGHTBOX_TEST_PYTHON"
