"""Per-warning evaluation: onsets, episodes, lives, and the threshold tuned on them."""

from __future__ import annotations

import numpy as np
import pytest

from models.warnings import (
    EVENT_KEYS,
    LifeEvents,
    alarm_onsets,
    tune_event_threshold,
    warning_events,
)

H = 30.0


def _rows(vehicle: str, days: range, alarm_days: set[int]) -> tuple[list[str], list[float],
                                                                      list[bool]]:
    return ([vehicle] * len(days), [float(d) for d in days], [d in alarm_days for d in days])


def _events(*triples: tuple[str, float, str]) -> LifeEvents:
    if not triples:
        return LifeEvents.of([], [], [])
    v, d, k = zip(*triples, strict=True)
    return LifeEvents.of(list(v), list(d), list(k))


def test_an_alarm_before_a_failure_is_one_true_onset_with_its_lead_time() -> None:
    ids, days, alarm = _rows("A", range(0, 40), set(range(10, 30)))
    figures = warning_events(ids, days, np.asarray(alarm, float), 0.5,
                             _events(("A", 30.0, "failure")), H)
    assert figures.as_json() == {
        "failures": 1, "warned": 1, "warned_14d": 1, "median_lead_days": 20.0,
        "onset_precision": 1.0, "false_alarms_per_100_vehicle_months": 0.0}
    assert list(figures.as_json()) == list(EVENT_KEYS)
    assert figures.counts() == {"onsets": 1, "false_onsets": 0, "undetermined_onsets": 0}


def test_a_flickering_alarm_is_one_call_not_many() -> None:
    ids, days, alarm = _rows("A", range(0, 80), {10, 12, 14, 20})
    found = alarm_onsets(ids, days, alarm, _events(), H)
    assert found.day == (10.0,)
    assert found.outcome == (False,)  # seen 30 days later with no failure


def test_a_long_alarm_calls_again_when_its_promise_runs_out() -> None:
    ids, days, alarm = _rows("A", range(0, 101), set(range(0, 100)))
    found = alarm_onsets(ids, days, alarm, _events(("A", 100.0, "failure")), H)
    assert found.day == (0.0, 30.0, 60.0, 90.0)
    assert found.outcome == (False, False, False, True)
    assert found.failures == (("A", 100.0, 10.0),)
    figures = warning_events(ids, days, np.asarray(alarm, float), 0.5,
                             _events(("A", 100.0, "failure")), H)
    assert figures.onset_precision == 0.25
    assert figures.warned_14d == 0


def test_the_failure_day_itself_is_never_scored() -> None:
    ids, days, alarm = _rows("A", range(0, 31), {30})
    found = alarm_onsets(ids, days, alarm, _events(("A", 30.0, "failure")), H)
    assert found.day == ()
    assert found.failures == (("A", 30.0, None),)
    assert found.scored_days == 30


def test_a_renewal_inside_the_horizon_leaves_the_onset_undetermined() -> None:
    ids, days, alarm = _rows("A", range(0, 60), {5})
    found = alarm_onsets(ids, days, alarm, _events(("A", 20.0, "renewal")), H)
    assert found.outcome == (None,)
    assert found.failures == ()


def test_a_confirmed_worn_part_makes_the_onset_true_but_is_not_a_failure_to_count() -> None:
    ids, days, alarm = _rows("A", range(0, 60), {5})
    figures = warning_events(ids, days, np.asarray(alarm, float), 0.5,
                             _events(("A", 20.0, "confirmed")), H)
    assert figures.onset_precision == 1.0
    assert figures.failures == 0


def test_data_ending_too_soon_leaves_an_onset_undetermined() -> None:
    ids, days, alarm = _rows("A", range(0, 20), {5})
    assert alarm_onsets(ids, days, alarm, _events(), H).outcome == (None,)


def test_a_new_part_gets_its_own_onset_right_after_the_repair() -> None:
    ids, days, alarm = _rows("A", range(0, 90), {25, 26, 41, 42})
    events = _events(("A", 30.0, "failure"), ("A", 70.0, "failure"))
    found = alarm_onsets(ids, days, alarm, events, H)
    assert found.day == (25.0, 41.0)
    assert found.outcome == (True, True)
    assert found.failures == (("A", 30.0, 5.0), ("A", 70.0, 29.0))


def test_false_alarms_are_counted_per_hundred_vehicle_months() -> None:
    ids_a, days_a, alarm_a = _rows("A", range(0, 365), {100, 200})
    ids_b, days_b, alarm_b = _rows("B", range(0, 365), set())
    figures = warning_events(ids_a + ids_b, days_a + days_b,
                             np.asarray(alarm_a + alarm_b, float), 0.5, _events(), H)
    months = 730 / (365.2425 / 12)
    assert figures.false_alarms_per_100_vehicle_months == pytest.approx(200 / months)
    assert figures.failures == 0 and figures.warned == 0
    assert figures.median_lead_days is None and figures.onset_precision == 0.0


def test_the_tuned_threshold_calls_the_failing_vehicle_and_not_the_noisy_ones() -> None:
    rng = np.random.default_rng(3)
    ids, days, proba, triples = [], [], [], []
    for v in range(12):
        fails = v < 4
        for d in range(120):
            ids.append(f"V{v}")
            days.append(float(d))
            base = rng.uniform(0.0, 0.3)
            proba.append(min(1.0, base + 0.6) if fails and 80 <= d < 100 else base)
        if fails:
            triples.append((f"V{v}", 100.0, "failure"))
    events = _events(*triples)
    cut, figures = tune_event_threshold(ids, days, proba, events, H, cost_fp=1.0,
                                        cost_fn=10.0)
    assert 0.3 <= cut <= 0.9
    assert figures.warned == 4 and figures.onset_precision == 1.0
    assert (figures.median_lead_days or 0) >= 19  # the earliest cheap cut: calls come early
    assert figures.cost(1.0, 10.0) == 0.0
    low = warning_events(ids, days, proba, 0.05, events, H)
    assert low.cost(1.0, 10.0) > 0.0


def test_unknown_event_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown life event kinds"):
        LifeEvents.of(["A"], [1.0], ["inspection"])


def _floor_case() -> tuple[list[str], list[float], list[float], LifeEvents]:
    """Ten failures announced at 0.9, two more only at 0.6, and five healthy vehicles with
    one 0.6 blip each: the 0.6 cut is cheapest (5 false onsets against 2 misses) but only
    12 of its 17 calls are right."""
    ids: list[str] = []
    days: list[float] = []
    proba: list[float] = []
    triples = []
    for v in range(17):
        peak = 0.9 if v < 10 else 0.6
        for d in range(100):
            ids.append(f"V{v}")
            days.append(float(d))
            hot = (70 <= d < 80) if v < 12 else d == 20
            proba.append(peak if hot else 0.1)
        if v < 12:
            triples.append((f"V{v}", 90.0, "failure"))
    return ids, days, proba, _events(*triples)


def test_a_precision_floor_keeps_the_cheapest_threshold_whose_calls_are_mostly_right() -> None:
    ids, days, proba, events = _floor_case()
    cut, figures = tune_event_threshold(ids, days, proba, events, H, cost_fp=1.0,
                                        cost_fn=10.0, candidates=[0.6, 0.9])
    assert cut == 0.6 and figures.warned == 12 and figures.false_onsets == 5
    cut, figures = tune_event_threshold(ids, days, proba, events, H, cost_fp=1.0,
                                        cost_fn=10.0, candidates=[0.6, 0.9],
                                        min_precision=0.8)
    assert cut == 0.9 and figures.warned == 10 and figures.onset_precision == 1.0


def test_a_precision_floor_no_threshold_reaches_leaves_the_cheapest_one() -> None:
    ids, days, proba, events = _floor_case()
    cut, _ = tune_event_threshold(ids, days, proba, events, H, cost_fp=1.0, cost_fn=10.0,
                                  candidates=[0.6, 0.9], min_precision=1.01)
    assert cut == 0.6
