"""The benchmark's partner set: the shipped profiles plus the held-out ones of a folder.

Used by the turn-taking benchmark (``bench/turn_taking.py``) and by ``coop-robot lesion``, so both
name, load and label their partners the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: The partner profiles shipped in ``config/partners/``, in the benchmark's order.
SHIPPED_PROFILES = ("typical", "fast", "slow", "hesitant", "erratic")
#: The held-out partners of a source checkout (not installed with the package).
CHECKOUT_HELDOUT_DIR = Path(__file__).resolve().parents[2] / "test" / "heldout_partners"


@dataclass(frozen=True)
class ProfileSpec:
    """A partner profile: ``name`` for the table, ``source`` (shipped name or YAML path) for the env."""

    name: str
    source: str
    heldout: bool = False
    adaptive: bool = False           # the partner adapts its timing to the robot (adaptation.enabled)

def resolve_profiles(names: Sequence[str], heldout: bool, heldout_dir: Path) -> list[ProfileSpec]:
    """Profile specs (validated by loading them); held-out = a file inside ``heldout_dir``;
    adaptive = the profile's ``adaptation.enabled``."""
    from coop_robot.partner.profile import load_profile, resolve_profile_path

    hdir = heldout_dir.resolve()
    sources = [str(n) for n in names]
    if heldout:
        files = sorted(hdir.glob("*.yaml"))
        if not files:
            raise ValueError(f"no held-out profiles (*.yaml) in {hdir}; pass --no-heldout or --heldout-dir")
        sources += [str(f) for f in files]
    specs: list[ProfileSpec] = []
    for src in sources:
        prof = load_profile(src)  # ProfileError names the bad profile
        path = resolve_profile_path(src).resolve()
        adaptation = getattr(prof, "adaptation", None)
        spec = ProfileSpec(name=prof.name, source=str(path), heldout=path.parent == hdir,
                           adaptive=bool(getattr(adaptation, "enabled", False)))
        if spec.name in {s.name for s in specs}:
            if spec.source in {s.source for s in specs}:
                continue
            raise ValueError(f"two profiles are named {spec.name!r} ({src}); give each a distinct name")
        specs.append(spec)
    return specs

