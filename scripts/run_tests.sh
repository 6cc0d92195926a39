#!/usr/bin/env bash
# Set up the environment with the test dependencies, then run the whole test suite.
# Extra arguments go to pytest. COOP_ROS_DISTRO=kilted runs it against the Kilted wheels.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh" test
. "$repo/scripts/_env_path.sh"
venv="$coop_venv"
cd "$repo"
exec "$venv/bin/python" -m pytest -q test "$@"
