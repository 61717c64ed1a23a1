"""The one params reader: a section merged over the project's params.yaml, unknown keys refused."""

from __future__ import annotations

import pytest

from ml import config


def test_section_is_params_yaml_when_nothing_is_given():
    assert config.section("sla") == config.load_params()["sla"]


def test_given_keys_win_and_nested_mappings_merge_key_by_key():
    s = config.section("forecast", {"horizon": 12, "ets": {"trend": None}})
    declared = config.load_params()["forecast"]
    assert s["horizon"] == 12 and s["folds"] == declared["folds"]
    assert s["ets"] == {**declared["ets"], "trend": None}


@pytest.mark.parametrize(
    "given,named",
    [
        ({"max_itr": 5}, "sla: unknown key(s) ['max_itr']"),
        ({"ets": {"x": 1}}, "forecast.ets: unknown key(s) ['x']"),
    ],
)
def test_unknown_keys_are_refused_naming_key_and_section(given, named):
    name = "forecast" if "ets" in given else "sla"
    with pytest.raises(
        ValueError,
        match=named.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
    ):
        config.section(name, given)


def test_unknown_section_and_non_mapping_are_refused():
    with pytest.raises(ValueError, match="no section 'nope'"):
        config.section("nope")
    with pytest.raises(ValueError, match="expected a mapping"):
        config.section("sla", ["max_iter"])


def test_the_result_is_a_copy():
    s = config.section("forecast")
    s["ets"]["trend"] = "mul"
    assert config.section("forecast")["ets"]["trend"] == config.load_params()["forecast"]["ets"]["trend"]
