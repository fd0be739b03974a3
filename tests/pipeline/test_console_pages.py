"""The console's pages and charts on their own: older lead documents still read as words,
charts without data say so, and every text from the store is escaped."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

from pipeline.console import charts, pages, words
from pipeline.console.evidence import FaultCodeEvent, LeadRow, VehicleHistory

OLD_DOCUMENT = {
    "lead_id": "lead-old", "component": "lv_battery", "severity": "medium",
    "probability": 0.734, "horizon_days": 30, "roadside_assistance": False,
    "customer": {"name": "Ada <b>Bold</b>", "phone": "+49 1"},
    "evidence": {"signals": {"crank_dip_min": 9.61, "ambient_temp": -4.0},
                 "fault_codes": [], "top_factors": [
                     {"feature": "crank_dip_min", "value": 9.61, "contribution": 1.2},
                     {"feature": "ambient_temp", "value": -4.0, "contribution": -0.01}]},
    "proposed_appointment": {"centre_id": "c1", "day": "2025-02-03",
                             "window_start": "2025-02-03T08:00:00Z",
                             "window_end": "2025-02-03T10:00:00Z"},
}


class _Tags(HTMLParser):
    """Counts start tags, so a test sees what a browser would build from the markup."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _tags(markup: str) -> list[str]:
    parser = _Tags()
    parser.feed(markup)
    return parser.tags


def test_an_older_document_without_words_still_reads_as_sentences() -> None:
    assert words.reasons(OLD_DOCUMENT) == [
        "lowest 12 V voltage while starting the engine 9.61 V raises the risk",
        "outside air temperature (median of the day) -4 °C hardly changes the risk"]
    assert words.evidence_lines(OLD_DOCUMENT) == [
        "outside air temperature (median of the day): -4 °C",
        "lowest 12 V voltage while starting the engine: 9.61 V"]
    assert words.confidence(OLD_DOCUMENT) == "73 % chance of a failure within 30 days"
    assert words.slot(OLD_DOCUMENT) == "Mon 03 Feb 2025, 08:00–10:00 (UTC)"


def test_a_critical_lead_says_why_it_has_no_slot() -> None:
    critical = {**OLD_DOCUMENT, "proposed_appointment": None, "roadside_assistance": True,
                "probability": None}
    assert words.slot(critical).startswith("none: the fault is critical")
    assert words.confidence(critical) == "raised by the vehicle's own fault codes, not by a model"


def test_a_chart_without_data_says_so_in_words() -> None:
    figure = charts.line_chart("soh", "Battery <health>", "%", [charts.Line("soh", [])],
                               empty="No battery health & no luck.")
    assert "<svg" not in figure
    assert '<p class="no-data">No battery health &amp; no luck.</p>' in figure
    assert "Battery &lt;health&gt;" in figure


def test_store_text_is_escaped_on_the_lead_page_and_in_the_timeline() -> None:
    row = LeadRow("lead-old", 'car"><img src=x>', "lv_battery", "medium", "sent", 0.734,
                  dt.datetime(2025, 2, 1, 9, tzinfo=dt.UTC), OLD_DOCUMENT)
    history = VehicleHistory(row.vehicle_id, "ICE-1", "north", {
        "crank_dip_min": [(dt.date(2025, 1, d), 9.5 + d / 100) for d in range(1, 5)],
        "ambient_temp": [(dt.date(2025, 1, d), -5.0 + d) for d in range(1, 5)]},
        (FaultCodeEvent(dt.datetime(2025, 1, 2, tzinfo=dt.UTC), "P0562", "stored", False,
                        "<script>low voltage</script>"),))
    page = pages.lead_page(row, history)
    assert "<img" not in page and "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;low voltage&lt;/script&gt;" in page
    tags = _tags(page)
    assert "img" not in tags and "script" not in tags
    assert tags.count("figure") == 4
    assert tags.count("svg") == 2, "no battery health nor pad wear: words, not empty axes"
    assert page.count('class="no-data"') >= 2
    assert page.count('class="point"') == 4


def test_a_held_lead_says_why_it_was_not_sent() -> None:
    row = LeadRow("lead-held", "car-1", "brakes", "high", "held", 0.8,
                  dt.datetime(2025, 2, 1, 9, tzinfo=dt.UTC), OLD_DOCUMENT, "no_consent")
    page = pages.lead_page(row, None)
    assert "held: the customer has not consented to be contacted" in page
    assert "The store holds no history for this vehicle." in page
