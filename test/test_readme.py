"""The README is the front page: what it is, a picture, the two commands, and the way into docs/.

What used to be checked here against the README (every parameter and topic documented) is now
checked against the generated tables of docs/parameters.md by test/test_docs.py.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
MANUAL_PAGES = ("getting_started", "lab_deployment", "architecture", "mirror_policy", "benchmarks",
                "recording_and_analysis", "parameters")


def test_ci_runs_the_readme_test_command():
    assert "bash scripts/run_tests.sh" in README
    assert "bash scripts/run_tests.sh" in (REPO / ".ci" / "run").read_text()
    assert "bash scripts/run_sim.sh" in README


def test_readme_is_a_short_front_page():
    lines = README.count("\n")
    assert lines <= 200, f"README.md has {lines} lines; keep it a front page (about 150) and put depth in docs/"
    images = re.findall(r"!\[[^\]]*\]\((docs/figures/[^)]+)\)", README)
    assert images and all((REPO / i).is_file() for i in images), "the README shows one figure from docs/figures"


def test_readme_points_into_every_manual_page():
    for page in MANUAL_PAGES:
        assert (REPO / "docs" / f"{page}.md").is_file(), f"docs/{page}.md is missing"
        assert f"(docs/{page}.md)" in README, f"README.md does not link docs/{page}.md"


def test_readme_status_matches_what_ships():
    """The status and usage reflect the shipped mirror checkpoint and recording."""
    assert (REPO / "coop_robot" / "policy" / "checkpoints" / "mirror.pt").is_file()
    from coop_robot.cli import build_parser

    default = build_parser().parse_args(["sim"]).policy
    assert default == "mirror"   # the main job shows the package's point
    assert f"with the **{default} policy**" in README and "--record" in README
    assert "no trained checkpoint" not in README and "next milestones" not in README


def test_manual_documents_every_parameter_and_topic_in_backticks():
    """Every parameter and topic named in the generated tables also appears in the manual."""
    manual = "\n".join((REPO / "docs" / f"{p}.md").read_text(encoding="utf-8") for p in MANUAL_PAGES)
    generated = re.findall(r"^\| `([^`]+)` \|", manual, re.MULTILINE)
    for name in ("velocity_scale", "debounce_s", "/partner/hand", "/turn/timing", "output_dir", "record_dir"):
        assert name in generated, f"{name} missing from the tables of docs/parameters.md"
