#!/usr/bin/env bash
# The main job, from nothing: set up the environment, then run the simulated interaction headless
# (20 robot turns, the mirror policy, typical partner), print the per-turn timing table and how it
# compares with the measured reactive baseline.
# Extra arguments go to "coop-robot sim", e.g. scripts/run_sim.sh --partner hesitant --turns 10
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh"
. "$repo/scripts/_env_path.sh"
venv="$coop_venv"
exec "$venv/bin/coop-robot" sim --turns 20 "$@"
