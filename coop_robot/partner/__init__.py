"""Simulated partner: a stochastic model of a person taking turns in the shared zone.

Pure Python (numpy, pyyaml). :mod:`.profile` loads and validates the YAML timing profiles
(``config/partners/*.yaml``); :mod:`.model` turns a profile into a hand trajectory that reacts to
the robot's turns.
"""

from coop_robot.partner.model import NEAR_MISS_S, PHASES, PartnerModel, Segment
from coop_robot.partner.profile import (
    PartnerProfile,
    ProfileError,
    TaskObjects,
    load_profile,
    partners_dir,
    resolve_profile_path,
    shipped_profiles,
    validate_profile,
)

__all__ = [
    "NEAR_MISS_S",
    "PHASES",
    "PartnerModel",
    "PartnerProfile",
    "ProfileError",
    "Segment",
    "TaskObjects",
    "load_profile",
    "partners_dir",
    "resolve_profile_path",
    "shipped_profiles",
    "validate_profile",
]
