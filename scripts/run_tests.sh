#!/usr/bin/env bash
# Set up the environment with the test dependencies, then lint (ruff, settings in ruff.toml) and run
# the whole test suite. Fails if the linter or any test fails.
# Extra arguments go to pytest. COOP_ROS_DISTRO=kilted runs it against the Kilted wheels.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh" test
. "$repo/scripts/_env_path.sh"
venv="$coop_venv"
cd "$repo"
lint=0
"$venv/bin/python" -m ruff check . || lint=$?
[ "$lint" = 0 ] || echo "ruff: lint errors above (fix them, or 'ruff check --fix' for the fixable ones)" >&2
tests=0
"$venv/bin/python" -m pytest -q test "$@" || tests=$?
[ "$tests" = 0 ] && exit "$lint"
exit "$tests"
