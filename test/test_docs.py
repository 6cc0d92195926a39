"""The manual (README.md and docs/*.md) against the code: generated tables, command lines, links.

Regenerates the topic/parameter/launch tables in memory from the real node classes and compares
them with docs/parameters.md; runs every documented ``coop-robot``, ``ros2 launch coop_robot``,
``python bench/...`` and ``bash scripts/...`` line through the parser or file it names; and checks
that no link or path leaves the repository.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from coop_robot import docs_tables

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
SHELL_LANGS = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(?P<target>\S+)", re.MULTILINE)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def shell_commands() -> list[tuple[str, str]]:
    """(page, command) for every command in a shell code block of the manual, continuations joined."""
    out = []
    for page in PAGES:
        for block in _FENCE.finditer(page.read_text(encoding="utf-8")):
            if block.group("lang") not in SHELL_LANGS:
                continue
            text = re.sub(r"\\\n\s*", " ", block.group("body"))
            for line in text.splitlines():
                for part in re.split(r"\s&&\s|;\s", line.strip()):
                    part = part.strip()
                    if part and not part.startswith("#"):
                        out.append((_rel(page), part))
    return out


def _tokens(command: str) -> list[str]:
    tokens = shlex.split(command, comments=True)
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):  # VAR=value prefixes
        tokens.pop(0)
    return tokens


def _commands(program: tuple[str, ...]) -> list[tuple[str, str, list[str]]]:
    found = []
    for page, command in shell_commands():
        tokens = _tokens(command)
        if tuple(tokens[: len(program)]) == program:
            found.append((page, command, tokens[len(program):]))
    return found


def _parse(parser, args: list[str]) -> str:
    """'' if ``parser`` accepts ``args``, else argparse's complaint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help / --version exit 0
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
    return ""


# --- generated tables -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nodes():
    return docs_tables.collect_nodes()


def test_generated_tables_match_the_code(nodes):
    blocks = docs_tables.generate_blocks(nodes)
    assert "`/partner/hand`" in blocks["topics"] and "`velocity_scale`" in blocks["parameters"]
    diff = docs_tables.page_diff(blocks=blocks)
    assert not diff, (f"docs/parameters.md disagrees with the code; run: {docs_tables.WRITE_COMMAND}\n"
                      + diff[:4000])


def test_every_node_of_the_graph_is_in_the_tables(nodes):
    assert [n.name for n in nodes] == ["recorder", "coop_sim", "perception", "policy", "controller", "turn_tracker",
                                       "live_view"]
    for node in nodes:
        assert node.parameters, f"{node.name}: no parameters read back"
        assert all(p.description for p in node.parameters.values()), f"{node.name}: a parameter lacks a description"


def test_every_topic_has_a_meaning(nodes):
    """The hand-written meaning table lists exactly the topics the graph's nodes use."""
    text = (REPO / "docs" / "parameters.md").read_text(encoding="utf-8")
    outside = re.sub(r"<!-- BEGIN GENERATED: (\S+) -->.*?<!-- END GENERATED: \1 -->", "", text, flags=re.DOTALL)
    described = set(re.findall(r"^\| `(/[^`]+)` \|", outside, re.MULTILINE))
    used = {e.topic for n in nodes if n.name != "recorder" for e in n.endpoints}
    assert {"/partner/hand", "/turn/timing", "/panda_arm_controller/joint_trajectory"} <= used
    assert not used - described, f"topics without a meaning in docs/parameters.md: {sorted(used - described)}"
    assert not described - used, f"docs/parameters.md describes topics no node uses: {sorted(described - used)}"


def test_policy_dependent_endpoints_are_marked(nodes):
    policy = next(n for n in nodes if n.name == "policy")
    by_topic = {e.topic: e.policies for e in policy.endpoints}
    assert by_topic["/sim/ground_truth/partner_plan"] == ("oracle", "sync oracle")
    assert by_topic["/sync/cue"] == ("sync eager", "sync mirror", "sync oracle", "sync reactive")
    sim = {(e.kind, e.topic): e.policies for e in next(n for n in nodes if n.name == "coop_sim").endpoints}
    assert sim[("pub", "/sync/cue")] == ("task sync",) and sim[("pub", "/clock")] == ()
    assert by_topic["/joint_states"] == ("mirror", "sync mirror")
    assert by_topic["/policy/decision"] == ()


def test_replace_blocks_refuses_a_page_without_markers():
    with pytest.raises(ValueError, match="BEGIN GENERATED"):
        docs_tables.replace_blocks("no markers here\n", {"topics": "x\n"})


def test_file_values_apply_node_name_over_wildcard(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "a.yaml").write_text("controller:\n  ros__parameters:\n    velocity_scale: 0.5\n")
    (tmp_path / "config" / "b.yaml").write_text("/**:\n  ros__parameters:\n    velocity_scale: 0.2\n    x: 1\n")
    files = (str(tmp_path / "config" / "a.yaml"), str(tmp_path / "config" / "b.yaml"))
    assert docs_tables.file_values("controller", files) == {"velocity_scale": 0.5, "x": 1}
    assert docs_tables.file_values("policy", files) == {"velocity_scale": 0.2, "x": 1}


# --- documented command lines -----------------------------------------------------------------
def test_documented_coop_robot_commands_parse():
    from coop_robot.cli import build_parser
    from coop_robot.training.train import build_parser as train_parser

    found = _commands(("coop-robot",))
    # bash scripts/run_sim.sh passes its arguments to `coop-robot sim`.
    found += [(page, cmd, ["sim"] + args) for page, cmd, args in _commands(("bash", "scripts/run_sim.sh"))]
    assert len(found) >= 10 and {args[0] for _, _, args in found if args} >= {"sim", "eval", "train", "analyze"}
    bad = []
    for page, command, args in found:
        if args and args[0] == "train":
            problem = _parse(train_parser(), args[1:])
        else:
            problem = _parse(build_parser(), args)
        if problem:
            bad.append(f"{page}: `{command}`: {problem}")
    assert not bad, "documented coop-robot commands the CLI rejects:\n" + "\n".join(bad)


def test_documented_launch_arguments_exist():
    found = _commands(("ros2", "launch", "coop_robot"))
    assert len(found) >= 5
    bad = []
    for page, command, args in found:
        launch_file = REPO / "launch" / args[0]
        if not launch_file.is_file():
            bad.append(f"{page}: `{command}`: no launch/{args[0]}")
            continue
        declared = {name for name, _, _ in docs_tables.launch_arguments(launch_file)}
        for arg in args[1:]:
            name, sep, _ = arg.partition(":=")
            if not sep:
                bad.append(f"{page}: `{command}`: {arg!r} is not name:=value")
            elif name not in declared:
                bad.append(f"{page}: `{command}`: {args[0]} declares no argument {name!r} (has {sorted(declared)})")
    assert not bad, "documented ros2 launch lines that do not match the launch files:\n" + "\n".join(bad)


def test_documented_scripts_and_benches_exist():
    found = _commands(("bash",)) + _commands(("python",))
    assert any(args[:1] == ["scripts/run_tests.sh"] for _, _, args in found)
    bad = []
    for page, command, args in found:
        if not args:
            continue
        if args[0] == "-m":
            if importlib.util.find_spec(args[1]) is None:
                bad.append(f"{page}: `{command}`: no module {args[1]}")
            continue
        path = REPO / args[0]
        if not path.is_file():
            bad.append(f"{page}: `{command}`: no file {args[0]}")
        elif args[0].startswith("bench/"):
            spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up while it loads
            try:
                spec.loader.exec_module(module)
            finally:
                sys.modules.pop(spec.name, None)
            if hasattr(module, "build_parser"):
                problem = _parse(module.build_parser(), args[1:])
                if problem:
                    bad.append(f"{page}: `{command}`: {problem}")
    assert not bad, "documented commands naming files or options that do not exist:\n" + "\n".join(bad)


def test_command_extraction_sees_continuations_and_prefixes():
    tokens = _tokens("COOP_ROS_DISTRO=kilted bash scripts/run_sim.sh --turns 3   # comment")
    assert tokens == ["bash", "scripts/run_sim.sh", "--turns", "3"]
    start = "ros2 launch coop_robot robot.launch.py params_file:=$PWD"
    joined = [c for _, c in shell_commands() if c.startswith(start)]
    assert joined and "trajectory_topic:=" in joined[0], "a backslash-continued command must be read as one line"


# --- links and paths --------------------------------------------------------------------------
def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE)}


def test_links_stay_inside_the_repository():
    bad = []
    for page in PAGES:
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
        web = re.search(r"https?://\S+", text)
        if web:
            bad.append(f"{_rel(page)}: web address {web.group(0)!r}; cite the source as plain text")
        targets = [m.group("target") for m in (*_LINK.finditer(text), *_REF_LINK.finditer(text))]
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
                bad.append(f"{_rel(page)}: link {target!r} is not a relative path")
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if REPO not in dest.parents and dest != REPO:
                bad.append(f"{_rel(page)}: link {target!r} leaves the repository")
            elif not dest.exists():
                bad.append(f"{_rel(page)}: link {target!r}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{_rel(page)}: link {target!r}: {_rel(dest)} has no heading #{anchor}")
    assert not bad, "links in the manual that do not resolve inside the repository:\n" + "\n".join(bad)


def test_slug_matches_github_headings():
    assert _slug("On a ROS 2 install (`colcon`, `ros2 launch`)") == "on-a-ros-2-install-colcon-ros2-launch"
    assert _slug("Mirror-unit analysis (`coop-robot analyze-policy`)") == (
        "mirror-unit-analysis-coop-robot-analyze-policy")


# Paths on the machines the project was written on, or files kept outside the repository. Written
# so that this file does not match itself.
OUTSIDE_PATHS = re.compile(r"/w[o]rk/|shared/(?:DESIGN|STYLE)|\.\./shar[e]d|/home/[a-z]|/Users/[A-Za-z]|/ro[o]t/")


def _tracked_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
        return [REPO / n for n in names if n]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "build", "install", "log", "runs", "__pycache__"}
        return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def test_no_file_mentions_a_path_outside_the_repository():
    bad = []
    files = _tracked_files()
    assert any(p.name == "README.md" for p in files)
    for path in files:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (figures, checkpoints)
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE_PATHS.search(line):
                bad.append(f"{_rel(path)}:{lineno}: {line.strip()[:120]}")
    assert not bad, "files mentioning paths outside the repository:\n" + "\n".join(bad)


def test_no_merge_conflict_markers_are_left_in_the_sources_or_docs():
    """A merge left `<<<<<<< HEAD` in the user's manual once; nothing tracked may carry one."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    bad = []
    for name in files:
        if not name.endswith((".md", ".py", ".yaml", ".txt", ".cfg", ".xml", ".sh", ".toml", ".ini")):
            continue
        lines = (REPO / name).read_text(encoding="utf-8", errors="replace").splitlines()
        bad += [f"{name}:{i}" for i, line in enumerate(lines, 1)
                if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "======="]
    assert not bad, f"merge conflict markers: {bad}"
