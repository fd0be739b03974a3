"""The per-day aggregates behind :mod:`pipeline.features.daily`, as DuckDB SQL.

Each query groups by (vehicle, UTC day) and reads only telemetry stamped in
``[$since, $until]`` of the vehicles in ``[$first, $last]`` (by id; a chunk of the fleet whose
rows a vehicle-ordered table's zonemaps find without scanning the rest; fault-code history and
repair orders are read back to the beginning, for code ages): the store does the heavy scan,
polars does the backward windows. A day's aggregates use that day's rows only, so they are
point-in-time by construction.
"""

from __future__ import annotations

from typing import Final

from pipeline.features.active_codes import history_cte

_WHEELS: Final = {"fl": "Row1.Wheel.Left", "fr": "Row1.Wheel.Right",
                  "rl": "Row2.Wheel.Left", "rr": "Row2.Wheel.Right"}
PAD_WEAR: Final = {k: f"Vehicle.Chassis.Axle.{w}.Brake.PadWear" for k, w in _WHEELS.items()}
"""Pad wear (%) signal per wheel: front left, front right, rear left, rear right."""
SPEED: Final = "Vehicle.Speed"
UTC_DAY: Final = "(DATE '1970-01-01' + CAST(fdiv(epoch_us(ts), 86400000000) AS INTEGER))"
"""The UTC day of ``ts``, from its epoch microseconds (floor division, so days before 1970 are
right too): the same date as ``CAST(timezone('UTC', ts) AS DATE)`` without a time-zone
conversion per row, which was a fifth of the daily aggregate's time."""

_PADS = ", ".join(f"'{p}'" for p in PAD_WEAR.values())

_MEDIAN_SIGNALS: Final = {
    "soh": "Vehicle.Powertrain.TractionBattery.StateOfHealth",
    "cell_v_max": "Vehicle.Powertrain.TractionBattery.CellVoltage.Max",
    "cell_v_min": "Vehicle.Powertrain.TractionBattery.CellVoltage.Min",
    "rest_voltage": "Vehicle.LowVoltageBattery.CurrentVoltage",
    "ambient_temp": "Vehicle.Exterior.AirTemperature",
}
_MEDIANS = ", ".join(f"'{s}'" for s in _MEDIAN_SIGNALS.values())
_WINDOW: Final = "ts <= $until AND ts >= $since AND vehicle_id >= $first AND vehicle_id <= $last"


def _median(name: str) -> str:
    """The exact median of one signal's day from its per-signal group: the value itself of a
    single sample, DuckDB's own interpolation ``lo * (1 - 0.5) + hi * 0.5`` of two (bit for bit what
    ``median`` gives), and ``median`` itself only for groups of three or more."""
    return (f"max(CASE WHEN g.n > 2 THEN m.med WHEN g.n = 2 THEN g.lo * 0.5 + g.hi * 0.5"
            f" ELSE g.lo END) FILTER (WHERE signal = '{_MEDIAN_SIGNALS[name]}')")


_EXTREMES: Final[dict[str, tuple[str, str]]] = {
    "cell_temp_max": ("max", "'Vehicle.Powertrain.TractionBattery.Temperature.Max'"),
    "insulation_resistance_min": ("min", "'BMS_Health.InsulationResistance'"),
    "pad_wear_max": ("max", _PADS),
    **{f"pad_wear_{k}": ("max", f"'{sig}'") for k, sig in PAD_WEAR.items()},
    "crank_dip_min": ("min", "'BCM_LowVoltage.CrankMinVoltage', 'Event.Crank.MinVoltage'"),
    "odometer_km": ("max", "'Vehicle.TraveledDistance'"),
}
"""The daily minima and maxima: column -> (aggregate, the signals it reads). Both forms of the
aggregate build theirs from this one table, so a signal added here reaches both."""


def _extreme(name: str, over: str) -> str:
    """Column ``name`` of :data:`_EXTREMES` as a filtered aggregate over ``over``: the rows'
    ``value`` or, in :data:`DAILY`'s pivot, the per-signal group's ``g.lo`` or ``g.hi``."""
    agg, signals = _EXTREMES[name]
    if over == "g":
        over = "g.hi" if agg == "max" else "g.lo"
        return f"{agg}({over}) FILTER (WHERE signal IN ({signals})) AS {name}"
    # A one-signal IN in the one-pass form's FILTERs took 7 % longer than an equality
    # (20,000 vehicles x 14 days, 3.4M rows, medians of 5).
    test = f"= {signals}" if "," not in signals else f"IN ({signals})"
    return f"{agg}({over}) FILTER (WHERE signal {test}) AS {name}"


_GROUP_EXTREMES: Final = ",\n  ".join(_extreme(n, "g") for n in _EXTREMES if n != "odometer_km")

DAILY: Final = f"""
WITH g AS (
  SELECT vehicle_id, {UTC_DAY} AS day, signal,
         count(value) AS n, min(value) AS lo, max(value) AS hi
  FROM telemetry WHERE {_WINDOW}
  GROUP BY ALL
), m AS (
  SELECT t.vehicle_id, t.day, t.signal, median(t.value) AS med
  FROM (SELECT vehicle_id, {UTC_DAY} AS day, signal, value FROM telemetry
        WHERE {_WINDOW} AND signal IN ({_MEDIANS})) t
  SEMI JOIN (SELECT vehicle_id, day, signal FROM g WHERE n > 2 AND signal IN ({_MEDIANS})) b
    USING (vehicle_id, day, signal)
  GROUP BY ALL
)
SELECT vehicle_id, day,
  {_median("soh")} AS soh,
  {_median("cell_v_max")} - {_median("cell_v_min")} AS cell_voltage_spread,
  {_GROUP_EXTREMES},
  {_median("rest_voltage")} AS rest_voltage,
  {_extreme("odometer_km", "g")},
  {_median("ambient_temp")} AS ambient_temp
FROM g LEFT JOIN m USING (vehicle_id, day, signal)
GROUP BY vehicle_id, day
"""
"""Daily medians, minima and maxima of the health and context signals.

The cranking minimum is the lowest of the BCM's own report and the agent's crank detector's
measurement (``Event.Crank.MinVoltage``): the same quantity, from whichever the bus gives.

Two levels: one pass groups the day's rows by signal (count, minimum, maximum: cheap,
streaming aggregates, the same shape as a bare ``GROUP BY vehicle, day, signal``), then the
per-signal groups are pivoted to one row per vehicle-day. Exact medians are holistic (they
keep every value of a group) and took most of the time when every (vehicle, day) computed
five of them; now ``median`` runs only over the signal-days with three or more samples, and
one or two samples take their median from the minimum and maximum. Every (vehicle, day) with
any telemetry gets a row, as before. Equal, value for value, to the former single-level
aggregate (``tests/pipeline/reference_daily.py``)."""

_ROW_EXTREMES: Final = ",\n    ".join(_extreme(n, "value") for n in _EXTREMES)
_STATS: Final = ",\n    ".join(
    f"count(value) FILTER (WHERE signal = '{s}') AS n_{k},"
    f" min(value) FILTER (WHERE signal = '{s}') AS lo_{k},"
    f" max(value) FILTER (WHERE signal = '{s}') AS hi_{k}" for k, s in _MEDIAN_SIGNALS.items())


def _day_median(name: str) -> str:
    """:func:`_median`'s rule over :data:`DAILY_BY_DAY`'s per-signal columns."""
    return (f"CASE WHEN a.n_{name} > 2 THEN m.med_{name}"
            f" WHEN a.n_{name} = 2 THEN a.lo_{name} * 0.5 + a.hi_{name} * 0.5"
            f" ELSE a.lo_{name} END")


DAILY_BY_DAY: Final = f"""
WITH a AS (
  SELECT vehicle_id, {UTC_DAY} AS day,
    {_STATS},
    {_ROW_EXTREMES}
  FROM telemetry WHERE {_WINDOW}
  GROUP BY ALL
), m AS (
  SELECT t.vehicle_id, t.day,
    {", ".join(f"median(t.value) FILTER (WHERE t.signal = '{s}') AS med_{k}"
               for k, s in _MEDIAN_SIGNALS.items())}
  FROM (SELECT vehicle_id, {UTC_DAY} AS day, signal, value FROM telemetry
        WHERE {_WINDOW} AND signal IN ({_MEDIANS})) t
  SEMI JOIN (SELECT vehicle_id, day FROM a
             WHERE greatest({", ".join(f"n_{k}" for k in _MEDIAN_SIGNALS)}) > 2) b
    USING (vehicle_id, day)
  GROUP BY ALL
)
SELECT a.vehicle_id, a.day, {_day_median("soh")} AS soh,
  {_day_median("cell_v_max")} - {_day_median("cell_v_min")} AS cell_voltage_spread,
  {", ".join(f"a.{n}" for n in _EXTREMES if n != "odometer_km")},
  {_day_median("rest_voltage")} AS rest_voltage, a.odometer_km,
  {_day_median("ambient_temp")} AS ambient_temp
FROM a LEFT JOIN m USING (vehicle_id, day)
"""
""":data:`DAILY`'s frame in one pass over the rows, for stores with few samples per signal-day.

Where a signal-day holds one or two samples (an agent sending daily summaries, or a store
like ``bench/models.py``'s) :data:`DAILY`'s per-signal groups are as many as the rows, so its
second grouping repeats the first. Here each row goes straight to its (vehicle, day) with
filtered aggregates (count, minimum and maximum of the median signals), and ``median`` runs
only over the vehicle-days where some median signal has three or more samples. Filtered
aggregates evaluate every filter on every row, so on dense stores (tens of samples per
signal-day) this is the slower form: :data:`SAMPLES_PROBE` decides per chunk. Equal, value
for value, to :data:`DAILY`."""

SPARSE_SAMPLES: Final = 2.0
"""Mean samples per signal-day up to which :data:`DAILY_BY_DAY` runs instead of
:data:`DAILY`. On 1.68M rows per chunk the one-pass form took 0.34 s against 0.51 s at one
sample per signal-day, the same time at two and four (0.25 s, 0.31 s) and 0.9 s against
0.3 s at fifty (docs/benchmarks.md)."""

SAMPLES_PROBE: Final = f"""
SELECT count(*) / greatest(count(DISTINCT ({UTC_DAY}, signal)), 1) FROM telemetry
WHERE ts <= $until AND ts >= $since AND vehicle_id = (
  SELECT min(vehicle_id) FROM telemetry WHERE {_WINDOW})
"""
"""Mean samples per signal-day of the first vehicle of the chunk in the window: the density
that picks the daily aggregate's form. One vehicle's rows are a few row groups of a
vehicle-ordered store; a wrong pick costs time, never a different frame."""

BRAKING: Final = f"""
WITH v AS (
  SELECT vehicle_id, {UTC_DAY} AS day, value / 3.6 AS mps,
         lag(value / 3.6) OVER (PARTITION BY vehicle_id, {UTC_DAY}
                                ORDER BY ts) AS prev
  FROM telemetry WHERE signal = '{SPEED}' AND ts <= $until AND ts >= $since
  AND vehicle_id >= $first AND vehicle_id <= $last
)
SELECT vehicle_id, day,
       sum(greatest(prev * prev - mps * mps, 0.0)) / 2000.0 AS braking_energy_kj_per_kg
FROM v WHERE prev IS NOT NULL
GROUP BY ALL
"""
"""Kinetic energy shed per kg of vehicle mass in the day's decelerations (kJ/kg).

Summed over consecutive speed samples of the same day; energy lost to drag and engine braking
is counted too, so it is an upper bound on what the friction brakes absorbed.
"""

FEATURE_DAYS: Final = "_feature_days"
"""The name under which the daily build registers the (vehicle_id, day) pairs the fault-code
and outlook features are computed for: every vehicle-day of the daily aggregate, or each
vehicle's latest one (what scoring reads). They come from the aggregate's own rows, which are
exactly the vehicle-days with telemetry in the window, so neither query scans the telemetry
again to find them (that second scan was about a tenth of a chunk's build)."""
_DAYS: Final = f"days AS (SELECT vehicle_id, day FROM {FEATURE_DAYS})"

DTC: Final = f"""
WITH {_DAYS}, {history_cte("$until", "vehicle_id >= $first AND vehicle_id <= $last")}
SELECT days.vehicle_id, days.day, ev.code,
       arg_max(ev.cleared, ev.seq) AS cleared_last,
       arg_max(ev.episode_start, ev.seq) AS first_seen,
       count(*) FILTER (WHERE NOT ev.cleared AND ev.d > days.day - INTERVAL 30 DAY
                        AND (ev.next_repair_day IS NULL OR ev.next_repair_day > days.day))
         AS events_30d
FROM days JOIN dtc_history ev ON ev.vehicle_id = days.vehicle_id
  AND ev.d <= days.day
GROUP BY ALL
"""
"""Per vehicle, day and code: whether its latest event cleared it (a clear the vehicle sent,
or a repair of the code's component: :mod:`pipeline.features.active_codes`), the day the
current episode began (first report after the last clear; every event of an episode is on or
before the latest one, so its start never comes from after the day), and how many times the
code was reported (pending, stored, ...) in the 30 days up to the day since the part was last
repaired: its recurrence (a vehicle's own clear does not reset it, a repair does: the reports
were about the part it replaced). Over the registered :data:`FEATURE_DAYS`, the events of the
chunk's vehicles (``$first`` to ``$last``) only."""

OUTLOOK_DAYS: Final = 30
"""How far ahead the temperature outlook looks (the default warning horizon)."""

OUTLOOK: Final = f"""
WITH {_DAYS}
SELECT days.vehicle_id, days.day, min(f.min_temp_c) AS outlook_min_temp_c
FROM days
JOIN vehicles v ON v.vehicle_id = days.vehicle_id
JOIN region_forecasts f ON lower(f.region) = lower(v.region)
  AND f.day > days.day AND f.day <= days.day + INTERVAL {OUTLOOK_DAYS} DAY
GROUP BY ALL
"""
"""The coldest forecast minimum temperature of the vehicle's region in the next
:data:`OUTLOOK_DAYS` days (``region_forecasts``, imported with the master data or by
``fleetcare leads campaigns --forecast``). The table keeps one value per region and day, the
latest forecast; for past days that is close to what happened, so a model trained on it sees
a sharper outlook than a real forecast gives a month ahead. Over the registered
:data:`FEATURE_DAYS`."""
