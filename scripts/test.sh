#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then
# checks formatting and lints, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing test tools: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null; fi
fi

# boto3, the AWS CLI and moto in a venv beside the build (made once, refreshed when
# scripts/py-requirements.txt changes): the serve tests drive `lightbox serve` with them.
LIGHTBOX_TEST_PYTHON="$(./scripts/py-env.sh | tail -n 1)"
export LIGHTBOX_TEST_PYTHON

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The log goes beside the build (a fresh clone has no target/ until cargo makes one).
log_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$log_dir"
cargo test --locked --all-targets 2>&1 | tee "$log_dir/test-output.log"
