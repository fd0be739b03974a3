"""Collection modes: windows keep dips visible, on-change respects deadbands and silence."""

import pytest

from edge.collect import OnChangeCollector, WindowCollector


def test_window_reports_min_max_mean_last_so_a_dip_survives() -> None:
    window = WindowCollector("V", 1.0)
    out = []
    for i, value in enumerate([12.6, 12.6, 9.1, 12.5, 12.6]):  # a 0.1 s dip to 9.1 V
        out += window.feed(100.0 + i * 0.1, value)
    assert out == []  # the window is still open
    out += window.feed(101.0, 12.7)  # the next window's first sample closes it
    assert {name: value for _, name, value in out} == pytest.approx(
        {"V:min": 9.1, "V:max": 12.6, "V:mean": 59.4 / 5, "V": 12.6})
    assert {ts for ts, _, _ in out} == {100.4}
    assert [(n, v) for _, n, v in window.flush()] == [("V:min", 12.7), ("V:max", 12.7),
                                                      ("V:mean", 12.7), ("V", 12.7)]
    assert window.flush() == []


def test_on_change_absolute_deadband_and_max_silence() -> None:
    change = OnChangeCollector("T", deadband_abs=0.5, max_silence_s=10.0)
    sent = [change.feed(float(t), v) for t, v in
            [(0, 20.0), (1, 20.4), (2, 20.6), (3, 20.9), (13, 20.9), (14, 21.0)]]
    assert [s[0][2] if s else None for s in sent] == [20.0, None, 20.6, None, 20.9, None]


def test_on_change_relative_deadband() -> None:
    change = OnChangeCollector("P", deadband_rel=0.1)
    sent = [bool(change.feed(float(t), v)) for t, v in enumerate([100.0, 109.0, 111.0, 99.0])]
    assert sent == [True, False, True, True]


def test_on_change_without_deadband_sends_every_change_only() -> None:
    change = OnChangeCollector("G")
    sent = [bool(change.feed(float(t), v)) for t, v in enumerate([1.0, 1.0, 2.0, 2.0])]
    assert sent == [True, False, True, False]
