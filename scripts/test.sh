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
# The tests build the crate with its test stubs (the `bench-stub` feature, through the
# dev-dependency on itself), so --all-targets lints them; the default build is linted too.
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --locked -- -D warnings
# The log goes beside the build (a fresh clone has no target/ until cargo makes one).
log_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$log_dir"

# moto's server (the AWS backend's tests run against it) on a free loopback port, stopped when
# this script ends. Not port 0: moto calls itself on its own port.
venv_bin="$(dirname "$LIGHTBOX_TEST_PYTHON")"
moto_port="$("$LIGHTBOX_TEST_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$venv_bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$log_dir/moto-server.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
LIGHTBOX_TEST_MOTO_URL="http://127.0.0.1:$moto_port"
export LIGHTBOX_TEST_MOTO_URL
for _ in $(seq 1 100); do
  if "$LIGHTBOX_TEST_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=1)' "$LIGHTBOX_TEST_MOTO_URL" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "moto_server did not start; its log:" >&2
    cat "$log_dir/moto-server.log" >&2
    exit 1
  fi
  sleep 0.2
done
cargo test --locked --all-targets 2>&1 | tee "$log_dir/test-output.log"
