# Sourced by the scripts: the virtual environment for the chosen ROS 2 distro.
# jazzy (default) lives in .venv, kilted in .venv-kilted, unless COOP_VENV says otherwise.
coop_distro="${COOP_ROS_DISTRO:-jazzy}"
if [ "$coop_distro" = jazzy ]; then coop_venv="${COOP_VENV:-$repo/.venv}"; else coop_venv="${COOP_VENV:-$repo/.venv-$coop_distro}"; fi
