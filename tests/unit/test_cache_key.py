"""The cache key: the same request always gives the same key, a different one never does."""

from __future__ import annotations

import re

from modelrunner.engine.cache_key import cache_key

PARAMS = {"n": 2, "label": "a", "region": {"code": "BE", "weight": 1.5}}


def test_key_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", cache_key("noop", "v1", PARAMS))


def test_key_is_stable() -> None:
    assert cache_key("noop", "v1", PARAMS) == cache_key("noop", "v1", dict(PARAMS))


def test_key_does_not_change_between_releases() -> None:
    # Keys are stored with every run: a change here silently turns every cached result into a miss.
    assert cache_key("noop", "v1", {"n": 1}) == "dc96cc778ab056b5782ca7c4be5c1512534b56acb9b850d5a9a296f3b0ef4848"


def test_key_ignores_the_order_of_parameters() -> None:
    reordered = {"region": {"weight": 1.5, "code": "BE"}, "label": "a", "n": 2}

    assert cache_key("noop", "v1", reordered) == cache_key("noop", "v1", PARAMS)


def test_key_treats_2_0_and_2_alike() -> None:
    assert cache_key("noop", "v1", {**PARAMS, "n": 2.0}) == cache_key("noop", "v1", PARAMS)


def test_key_changes_with_the_model_version() -> None:
    assert cache_key("noop", "v2", PARAMS) != cache_key("noop", "v1", PARAMS)


def test_key_changes_with_the_model() -> None:
    assert cache_key("other", "v1", PARAMS) != cache_key("noop", "v1", PARAMS)


def test_key_changes_with_any_parameter() -> None:
    base = cache_key("noop", "v1", PARAMS)

    assert cache_key("noop", "v1", {**PARAMS, "n": 3}) != base
    assert cache_key("noop", "v1", {**PARAMS, "label": "b"}) != base
    assert cache_key("noop", "v1", {**PARAMS, "region": {"code": "BE", "weight": 1.6}}) != base
    assert cache_key("noop", "v1", {**PARAMS, "extra": None}) != base


def test_key_changes_with_step_inputs_and_upstream_outputs() -> None:
    base = cache_key("noop", "v1", PARAMS)
    keys = {
        cache_key("noop", "v1", PARAMS, step="fit"),
        cache_key("noop", "v1", PARAMS, input_versions={"cases": "abc"}),
        cache_key("noop", "v1", PARAMS, input_versions={"cases": "abd"}),
        cache_key("noop", "v1", PARAMS, upstream_outputs={"fit": "sha-1"}),
    }

    assert base not in keys
    assert len(keys) == 4


def test_empty_inputs_are_the_same_as_none() -> None:
    assert cache_key("noop", "v1", PARAMS, input_versions={}, upstream_outputs={}) == cache_key("noop", "v1", PARAMS)
