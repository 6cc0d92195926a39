"""Partner profiles: every shipped profile loads, any file path works, bad files are named."""

import math
from pathlib import Path

import pytest
import yaml

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

SHIPPED = {"typical", "fast", "slow", "hesitant", "erratic"}


def typical_doc() -> dict:
    return yaml.safe_load((partners_dir() / "typical.yaml").read_text())


def write_profile(tmp_path: Path, doc, name: str = "partner.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_all_five_profiles_are_shipped():
    assert SHIPPED <= set(shipped_profiles())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_profile_loads_by_name(name):
    profile = load_profile(name)
    assert isinstance(profile, PartnerProfile)
    assert profile.name == name
    assert Path(profile.source) == partners_dir() / f"{name}.yaml"
    assert profile.description
    r = profile.reaction_time_s
    assert r.min_s <= r.median_s <= r.max_s


def test_shipped_profiles_have_their_character():
    typical, fast, slow = load_profile("typical"), load_profile("fast"), load_profile("slow")
    hesitant, erratic = load_profile("hesitant"), load_profile("erratic")
    assert typical.reaction_time_s.median_s == pytest.approx(0.25)
    assert fast.reaction_time_s.median_s < typical.reaction_time_s.median_s < slow.reaction_time_s.median_s
    assert fast.reach_duration_s.mean_s < typical.reach_duration_s.mean_s < slow.reach_duration_s.mean_s
    assert not typical.adaptation.enabled and slow.adaptation.enabled
    assert hesitant.hesitation.probability >= 0.3
    assert hesitant.false_start.depth_fraction[1] < 0.5  # stays outside the zone (entry at ~0.68)
    assert erratic.false_start.depth_fraction[0] > 0.7  # enters the zone briefly
    assert erratic.reaction_time_s.sigma > typical.reaction_time_s.sigma
    # Nobody reaches for the same spot every turn (issue 10): fast works through the objects in order.
    assert fast.task_objects.choice == "cycle"
    assert {p.task_objects.choice for p in (typical, slow, hesitant, erratic)} == {"uniform"}


def test_unknown_name_lists_the_shipped_profiles():
    with pytest.raises(ProfileError, match="unknown partner profile 'telepathic'") as err:
        load_profile("telepathic")
    for name in SHIPPED:
        assert name in str(err.value)


def test_any_profile_file_path_works(tmp_path):
    doc = typical_doc()
    doc["name"] = "my_colleague"
    doc["reaction_time_s"]["median"] = 0.31
    del doc["adaptation"]  # optional: defaults to disabled
    path = write_profile(tmp_path, doc, "colleague.yaml")
    profile = load_profile(str(path))
    assert profile.name == "my_colleague"
    assert profile.reaction_time_s.median_s == pytest.approx(0.31)
    assert not profile.adaptation.enabled
    assert load_profile(path) == profile  # a Path object works too


def test_adaptation_single_rate_means_twice_as_fast_to_slow_down():
    rule = load_profile("slow").adaptation
    assert (rule.speed_up_rate, rule.slow_down_rate) == pytest.approx((0.05, 0.10))


def test_adaptation_split_rates(tmp_path):
    doc = typical_doc()
    doc["adaptation"] = {"enabled": True, "speed_up_rate": 0.08, "slow_down_rate": 0.04,
                         "min_scale": 0.5, "max_scale": 2.0}
    rule = load_profile(write_profile(tmp_path, doc, "split.yaml")).adaptation
    assert (rule.speed_up_rate, rule.slow_down_rate) == pytest.approx((0.08, 0.04))


def test_bare_name_and_path_resolution(tmp_path, monkeypatch):
    assert resolve_profile_path("fast") == partners_dir() / "fast.yaml"
    monkeypatch.chdir(tmp_path)
    write_profile(tmp_path, typical_doc(), "typical.yaml")
    # "typical.yaml" has a suffix, so it is a file path (here: the copy in the working directory).
    assert resolve_profile_path("typical.yaml") == Path("typical.yaml")
    with pytest.raises(ProfileError, match="does not exist"):
        resolve_profile_path("./nowhere/fast.yaml")


def _set(path: str, value):
    def mutate(doc):
        *parents, leaf = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value
        return doc
    return mutate


def _delete(path: str):
    def mutate(doc):
        *parents, leaf = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        del node[leaf]
        return doc
    return mutate


BAD_DOCS = {
    "unknown_top_key": (_set("reaction_tme_s", 0.2), "reaction_tme_s"),
    "unknown_nested_key": (_set("dwell_s.median", 0.8), "dwell_s.median"),
    "negative_duration": (_set("reach_duration_s.mean", -0.7), "reach_duration_s.mean"),
    "nan": (_set("dwell_s.sd", math.nan), "dwell_s.sd"),
    "infinite": (_set("reaction_time_s.max", math.inf), "reaction_time_s.max"),
    "probability_above_one": (_set("hesitation.probability", 1.5), "hesitation.probability"),
    "missing_key": (_delete("withdraw_duration_s"), "withdraw_duration_s"),
    "missing_nested_key": (_delete("reaction_time_s.sigma"), "reaction_time_s.sigma"),
    "string_for_number": (_set("reaction_time_s.median", "quick"), "reaction_time_s.median"),
    "bool_for_number": (_set("pause.probability", True), "pause.probability"),
    "max_below_min": (_set("reaction_time_s.max", 0.05), "reaction_time_s.max"),
    "fraction_not_a_pair": (_set("hesitation.at_fraction", [0.3]), "hesitation.at_fraction"),
    "fraction_out_of_range": (_set("false_start.depth_fraction", [0.5, 1.2]), "false_start.depth_fraction"),
    "rate_too_large": (_set("adaptation.rate", 0.8), "adaptation.rate"),
    "enabled_not_bool": (_set("adaptation.enabled", "yes please"), "adaptation.enabled"),
    "rate_and_split_rates": (_set("adaptation.speed_up_rate", 0.1), "adaptation"),
    "one_split_rate_only": (lambda d: _set("adaptation.speed_up_rate", 0.1)(_delete("adaptation.rate")(d)),
                            "adaptation.slow_down_rate"),
    "slow_down_rate_too_large": (lambda d: _set("adaptation.slow_down_rate", 1.5)(
        _set("adaptation.speed_up_rate", 0.1)(_delete("adaptation.rate")(d))), "adaptation.slow_down_rate"),
    "section_not_mapping": (_set("pause", 0.1), "pause"),
    "empty_name": (_set("name", ""), "name"),
    "task_objects_not_mapping": (_set("task_objects", "uniform"), "task_objects"),
    "task_choice_missing": (_set("task_objects", {"index": 1}), "task_objects.choice"),
    "task_choice_unknown": (_set("task_objects", {"choice": "random"}), "task_objects.choice"),
    "task_index_negative": (_set("task_objects", {"choice": "fixed", "index": -1}), "task_objects.index"),
    "task_index_not_int": (_set("task_objects", {"choice": "cycle", "index": 1.5}), "task_objects.index"),
    "task_index_bool": (_set("task_objects", {"choice": "fixed", "index": True}), "task_objects.index"),
    "task_index_with_uniform": (_set("task_objects", {"choice": "uniform", "index": 2}), "task_objects.index"),
    "task_weights_with_fixed": (_set("task_objects", {"choice": "fixed", "weights": [1, 1]}), "task_objects.weights"),
    "task_weights_missing": (_set("task_objects", {"choice": "weighted"}), "task_objects.weights"),
    "task_weights_all_zero": (_set("task_objects", {"choice": "weighted", "weights": [0, 0]}), "task_objects.weights"),
    "task_weights_negative": (_set("task_objects", {"choice": "weighted", "weights": [1, -1]}),
                              "task_objects.weights"),
    "task_weights_nan": (_set("task_objects", {"choice": "weighted", "weights": [1, math.nan]}),
                         "task_objects.weights"),
    "task_weights_not_list": (_set("task_objects", {"choice": "weighted", "weights": 1}), "task_objects.weights"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_bad_profile_file_names_file_and_key(tmp_path, case):
    mutate, key = BAD_DOCS[case]
    path = write_profile(tmp_path, mutate(typical_doc()))
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    message = str(err.value)
    assert str(path) in message
    assert repr(key) in message


@pytest.mark.parametrize("text, expected", [
    ("- name: typical\n- reaction_time_s: 0.2\n", "expected a mapping"),
    ("", "expected a mapping"),
    ("name: [unclosed\nreaction_time_s: {median: 0.25\n", "not valid YAML"),
])
def test_malformed_document_names_file(tmp_path, text, expected):
    path = write_profile(tmp_path, text)
    with pytest.raises(ProfileError, match=expected) as err:
        load_profile(str(path))
    assert str(path) in str(err.value)


def test_nonexistent_path_is_named(tmp_path):
    missing = tmp_path / "ghost.yaml"
    with pytest.raises(ProfileError, match="does not exist") as err:
        load_profile(str(missing))
    assert str(missing) in str(err.value)


@pytest.mark.parametrize("section, expected", [
    (None, TaskObjects("fixed", 0, ())),  # absent: the nominal object every turn, as before task objects
    ({"choice": "fixed"}, TaskObjects("fixed", 0, ())),
    ({"choice": "fixed", "index": 3}, TaskObjects("fixed", 3, ())),
    ({"choice": "cycle", "index": 1}, TaskObjects("cycle", 1, ())),
    ({"choice": "uniform"}, TaskObjects("uniform", 0, ())),
    ({"choice": "weighted", "weights": [1, 0, 2.5]}, TaskObjects("weighted", 0, (1.0, 0.0, 2.5))),
])
def test_task_objects_section_is_read(section, expected):
    doc = typical_doc()
    doc.pop("task_objects", None)
    if section is not None:
        doc["task_objects"] = section
    assert validate_profile(doc, "from-test").task_objects == expected


def test_task_object_key_that_does_not_fit_the_choice_says_what_the_choice_takes():
    doc = _set("task_objects", {"choice": "uniform", "weights": [1, 2]})(typical_doc())
    with pytest.raises(ProfileError, match=r"^from-test: key 'task_objects\.weights' does not apply: "
                                           r"choice 'uniform' takes no other key"):
        validate_profile(doc, "from-test")
    doc = _set("task_objects", {"choice": "weighted"})(typical_doc())
    with pytest.raises(ProfileError, match=r"missing required key 'task_objects\.weights': choice 'weighted' takes "
                                           r"'task_objects\.weights'"):
        validate_profile(doc, "from-test")


def test_validate_profile_uses_the_given_source_label():
    doc = _set("hesitation.probability", -0.1)(typical_doc())
    with pytest.raises(ProfileError, match=r"^from-test: key 'hesitation\.probability': expected a finite number >= 0"):
        validate_profile(doc, "from-test")


def test_profile_error_is_a_value_error():
    assert issubclass(ProfileError, ValueError)
