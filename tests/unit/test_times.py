"""Seismo's one time format: `now_rfc3339` (cached per second) writes what `rfc3339` writes."""

import re

import pytest

import seismo.times as times


@pytest.mark.parametrize("nanoseconds", [1_795_000_000_000_000_000, 1_795_000_000_999_999_999, 1_795_000_001_000_000_500, 0])
def test_now_matches_rfc3339_across_second_boundaries(monkeypatch, nanoseconds):
    monkeypatch.setattr(times.time, "time_ns", lambda: nanoseconds)
    text = times.now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert text == times.rfc3339((nanoseconds // 1000) / 1e6)
    assert times.parse_timestamp(text) == pytest.approx(nanoseconds / 1e9, abs=1e-6)


def test_the_cached_second_is_reused_within_its_second_and_replaced_after(monkeypatch):
    now = [1_795_000_000_100_000_000]
    monkeypatch.setattr(times.time, "time_ns", lambda: now[0])
    times.now_rfc3339()
    times._last_second = (times._last_second[0], "1999-01-01T00:00:00")  # a stale text for the cached second
    now[0] += 500_000_000
    assert times.now_rfc3339() == "1999-01-01T00:00:00.600000Z"  # same second: the cached text
    now[0] += 500_000_000
    assert times.now_rfc3339() == times.rfc3339(1_795_000_001.1)  # the next second: formatted afresh
