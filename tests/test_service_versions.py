"""Which hosted version is the newest: the one a request without a version gets."""

from __future__ import annotations

import random

from trm_service.registry import version_key

ORDERED = ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.2", "1.0.0-rc1", "1.0.0", "1.0.0+b2", "1.9.0", "1.10.0",
           "2.0.0-beta", "2.0.0"]


def test_versions_sort_as_semantic_versioning_orders_them():
    shuffled = random.Random(0).sample(ORDERED, len(ORDERED))
    assert sorted(shuffled, key=version_key) == ORDERED


def test_dated_versions_sort_by_date():
    assert sorted(["2026-12-01", "2026-11-30", "2025-12-31"], key=version_key) == [
        "2025-12-31", "2026-11-30", "2026-12-01"]


def test_a_leading_v_is_read_as_tags_write_it():
    """"v1.1" had sorted after "3.0.0" (a word after every number) and stayed the default."""
    assert sorted(["3.0.0", "v1.1", "1.9.0", "V2.0.0-rc1"], key=version_key) == ["v1.1", "1.9.0", "V2.0.0-rc1", "3.0.0"]


def test_a_word_version_comes_before_every_numbered_one_and_equal_readings_keep_one_order():
    """"latest" or "dev" had sorted after every number and stayed the default whatever version came after it."""
    versions = ["1.0.0", "latest", "2", "dev", "v2", "1.0.0+build.5"]
    for seed in range(5):
        shuffled = random.Random(seed).sample(versions, len(versions))
        assert sorted(shuffled, key=version_key) == ["dev", "latest", "1.0.0", "1.0.0+build.5", "2", "v2"]


def test_a_release_written_short_comes_after_its_pre_releases():
    """QA: "2" and "v2" sorted before "2.0.0-rc1", which became the default beside them."""
    versions = ["2", "2.0.0-rc1", "v2", "2.0.0", "1.9", "2.0.1"]
    for seed in range(5):
        shuffled = random.Random(seed).sample(versions, len(versions))
        assert sorted(shuffled, key=version_key) == ["1.9", "2.0.0-rc1", "2", "2.0.0", "v2", "2.0.1"]
