"""``coop-robot train --resume``: a run stopped after any iteration goes on to the figures of a run
that never stopped; a state that cannot be resumed is refused, naming why, before anything runs."""

from __future__ import annotations

import json

import pytest
import torch

from coop_robot.policy.mirror_net import load_checkpoint
from coop_robot.training.collect import InProcessCollector
from coop_robot.training.config import TrainConfig
from coop_robot.training.replay import SequenceReplay
from coop_robot.training.train import (
    CHECKPOINT_NAME,
    CURVES_CSV,
    RESUME_STATE,
    ResumeError,
    load_resume_state,
    main,
    train,
)

# Three short iterations, greedy evaluation at 2 and 3 (the last), two sessions collected per iteration.
SHORT = dict(seed=5, iterations=3, eval_every=2, episodes_per_iteration=2, turns_per_episode=1,
             updates_per_iteration=3, eval_partners=["typical"], eval_turns=1, batch_size=4, sequence_length=32,
             burn_in=8)


class _StopsAt(InProcessCollector):
    """Plays sessions until its ``stop_at``-th batch, then is interrupted (Ctrl-C, a preempted job)."""

    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at, self.batches = stop_at, 0

    def run(self, state_dict, jobs):
        self.batches += 1
        if self.batches == self.stop_at:
            raise KeyboardInterrupt
        return super().run(state_dict, jobs)


def _weights(path):
    net, info = load_checkpoint(path)
    return net.state_dict(), info.extra


@pytest.mark.parametrize("stop_at", [3, 4])   # batch 3 = iteration 2's play (state after 1); 4 = after 2
def test_a_resumed_run_ends_with_the_figures_of_one_that_never_stopped(tmp_path, stop_at):
    cfg = TrainConfig(**SHORT)
    straight = train(cfg, tmp_path / "straight", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False, collector=_StopsAt(stop_at))
    saved = torch.load(tmp_path / "resumed" / RESUME_STATE, weights_only=True)
    assert saved["iteration"] == stop_at - 2
    resumed = train(cfg, tmp_path / "resumed", progress=False, resume=True)

    assert (tmp_path / "resumed" / CURVES_CSV).read_text() == (tmp_path / "straight" / CURVES_CSV).read_text()
    assert len(resumed.rows) == len(straight.rows) == cfg.iterations + 1
    assert resumed.baseline == straight.baseline
    wa, extra_a = _weights(tmp_path / "straight" / CHECKPOINT_NAME)
    wb, extra_b = _weights(tmp_path / "resumed" / CHECKPOINT_NAME)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.dumps(extra_a, sort_keys=True) == json.dumps(extra_b, sort_keys=True)


def test_resume_refuses_what_it_cannot_go_on_from(tmp_path):
    cfg = TrainConfig(**{**SHORT, "iterations": 1})
    with pytest.raises(ResumeError, match=f"no {RESUME_STATE} in .*nothing to resume"):
        train(cfg, tmp_path / "none", progress=False, resume=True)
    assert not (tmp_path / "none").exists()
    train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ResumeError, match="has finished all 1 iterations"):
        train(cfg, tmp_path / "run", progress=False, resume=True)
    other = TrainConfig(**{**SHORT, "iterations": 1, "learning_rate": 0.5})
    with pytest.raises(ResumeError, match=r"another config \(learning_rate: 0.001 there, 0.5 now\)"):
        train(other, tmp_path / "run", progress=False, resume=True)
    state = tmp_path / "run" / RESUME_STATE
    state.write_bytes(state.read_bytes()[:1000])   # truncated: a disk that filled up
    with pytest.raises(ResumeError, match="cannot be read .*nothing was changed"):
        train(cfg, tmp_path / "run", progress=False, resume=True)
    with pytest.raises(ResumeError, match="cannot be read .*nothing was changed"):   # the command's mapped check
        load_resume_state(tmp_path / "run", cfg, mmap=True)


def test_the_command_line_resumes_and_refuses_with_exit_status_2(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--resume", "--iterations", "2", "--ray-address", "none", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["--seeds", "0", "1", "--resume", "--out", str(out)]) == 2
    assert "--resume trains one run, not a sweep" in capsys.readouterr().err


def test_the_replay_buffer_comes_back_from_its_state_exactly():
    import numpy as np

    replay = SequenceReplay(3)
    for i in range(4):
        replay.add({"x": np.full((2, 2), i, dtype=np.float32), "m": np.array([i % 2 == 0, True])})
    back = SequenceReplay.from_state(replay.state())
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    a, b = replay.sample(5, rng_a), back.sample(5, rng_b)
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    back.add({"x": np.full((2, 2), 9, dtype=np.float32), "m": np.array([True, True])})
    replay.add({"x": np.full((2, 2), 9, dtype=np.float32), "m": np.array([True, True])})
    after_a, after_b = replay.sample(8, np.random.default_rng(2)), back.sample(8, np.random.default_rng(2))
    assert np.array_equal(after_a["x"], after_b["x"])
    assert len(SequenceReplay.from_state(SequenceReplay(4).state())) == 0
    with pytest.raises(ValueError, match="not a replay buffer's state"):
        SequenceReplay.from_state({"capacity": 3})


def test_ctrl_c_says_where_the_run_stands_and_exits_130(tmp_path, capsys, monkeypatch):
    import coop_robot.training.train as train_module

    def stopped_after_iteration_1(cfg, out_dir, **_kwargs):
        train(TrainConfig(**SHORT), out_dir, progress=False, collector=_StopsAt(3))   # Ctrl-C in iteration 2

    def stopped_at_once(cfg, out_dir, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", stopped_at_once)
    assert main(["--out", str(tmp_path / "early"), "--ray-address", "none", "--quiet"]) == 130
    assert "interrupted; no iteration had finished, so there is nothing to resume" in capsys.readouterr().err
    monkeypatch.setattr(train_module, "train", stopped_after_iteration_1)
    out = tmp_path / "run"
    assert main(["--out", str(out), "--ray-address", "none", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; {out / RESUME_STATE} holds iteration 1: run the same command with --resume" in err
