#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install everything into it:
# the ROS 2 client library and message wheels, the Python dependencies and coop_robot itself.
#
#   COOP_ROS_DISTRO=jazzy|kilted   which ROS 2 wheels to use (default: jazzy)
#   COOP_VENV=path                 where the environment lives (default: .venv, or .venv-kilted)
#   COOP_PYTHON=python3.11         the interpreter to build it with
# Source it (". scripts/setup_env.sh") or run it; pass "test" to add the test dependencies.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/_env_path.sh"
distro="$coop_distro"
case "$distro" in jazzy|kilted) ;; *) echo "COOP_ROS_DISTRO must be jazzy or kilted, got '$distro'" >&2; exit 2;; esac
venv="$coop_venv"
py="${COOP_PYTHON:-$(command -v python3.11 || command -v python3)}"
# A stamp file records what was installed, so later runs skip pip; a "test" set-up also serves
# a plain one.
stamp_base="$venv/.coop_robot_${distro}_$(cat "$repo/requirements.txt" "$repo/requirements-test.txt" "$repo/setup.py" | sha1sum | cut -c1-12)"
stamp="$stamp_base${1:+_$1}"

if [ ! -x "$venv/bin/python" ]; then
  if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c "import ensurepip" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing python3-venv (Debian/Ubuntu) ..." >&2
      apt-get update -qq && apt-get install -y -qq python3-venv python3.11-venv >/dev/null 2>&1 || apt-get install -y -qq python3-venv >/dev/null
    else
      echo "Python's venv module is missing: install python3-venv (e.g. sudo apt-get install python3.11-venv)" >&2; exit 2
    fi
  fi
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] && [ ! -f "${stamp_base}_test" ]; then
  echo "setting up $venv (ROS 2 $distro wheels) ..." >&2
  ros=(rclpy rcl-interfaces std-msgs std-srvs geometry-msgs sensor-msgs trajectory-msgs diagnostic-msgs rosgraph-msgs
       builtin-interfaces visualization-msgs)
  pkgs=()
  for p in "${ros[@]}"; do pkgs+=("ros-$distro-$p"); done
  pkgs[0]="ros-$distro-rclpy[fastrtps]"
  extra=()
  [ "${1:-}" = test ] && extra=(-r "$repo/requirements-test.txt")
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pkgs[@]}" -r "$repo/requirements.txt" "${extra[@]}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$repo"
  rm -f "$venv"/.coop_robot_* && touch "$stamp"
fi
