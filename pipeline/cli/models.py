"""``fleetcare models``: check the models on your own data, and manage the registry.

Heavy modules (scikit-learn, DuckDB) are imported inside the handlers, so listing commands
stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli.text import format_fields, format_value

SubParsers = argparse._SubParsersAction


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str,
                       option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())


def register_models(sub: SubParsers) -> None:
    """``fleetcare models evaluate|battery-life|list|show|promote``."""
    models = sub.add_parser("models", help="evaluate models on any data; the model registry",
                            description="Cross-validate a fault warning or the "
                                        "battery-life forecaster on your own CSV files, and "
                                        "list, show or promote registered models.")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    _register_evaluate(msub)
    _register_battery_life(msub)
    _register_registry(msub)


def _register_evaluate(msub: SubParsers) -> None:
    ev = msub.add_parser(
        "evaluate", help="stratified k-fold cost of a fault warning on a CSV, with baselines",
        description="Numeric columns are features (empty or 'na' cells are missing); "
                    "non-numeric ones are left out and named. Each fold's model picks its "
                    "threshold on its own training part, then warns on the fold it never saw. "
                    "The same folds give the cost of never warning and of a plain "
                    "class-weighted gradient-boosting model.")
    ev.add_argument("data", type=Path, help="CSV file with a header row")
    ev.add_argument("--label", required=True, help="0/1 (or true/false) column: failed?")
    ev.add_argument("--cost-fp", type=float, required=True, help="cost of a needless warning")
    ev.add_argument("--cost-fn", type=float, required=True, help="cost of a missed failure")
    ev.add_argument("--group", metavar="COLUMN",
                    help="keep each value's rows in one fold (e.g. the vehicle id): rows of "
                         "one vehicle are near copies, and splitting them flatters the model")
    ev.add_argument("--folds", type=int, default=5, help="cross-validation folds (at least 2)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the fold split and the model")
    ev.add_argument("--estimator", choices=("boosted", "logistic"), default="boosted",
                    help="boosted: LightGBM, calibrated on out-of-fold scores (default); "
                         "logistic: the logistic fault warning")
    ev.add_argument("--robust", action=argparse.BooleanOptionalAction, default=True,
                    help="logistic only: signed log1p of heavy-tailed columns first "
                         "(default: on; trees need no transform)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from models.crossval import cross_validate_cost
    from pipeline.ml.tabular import read_labelled_csv

    if args.cost_fp <= 0 or args.cost_fn <= 0:
        print("--cost-fp and --cost-fn must be positive", file=sys.stderr)
        return 2
    if args.folds < 2:
        print(f"--folds must be at least 2, got {args.folds}", file=sys.stderr)
        return 2
    table = read_labelled_csv(args.data, args.label, args.group)
    cv = cross_validate_cost(table.X, table.y, cost_fp=args.cost_fp, cost_fn=args.cost_fn,
                             folds=args.folds, seed=args.seed, groups=table.groups,
                             estimator=args.estimator, robust=args.robust)
    out = {"data": str(args.data), "label": args.label, "group": args.group,
           "rows": int(table.y.size),
           "features": table.features, "ignored_columns": table.ignored_columns,
           "unlabelled_rows": table.unlabelled_rows, "folds": cv.folds,
           "total_cost": cv.report["cost"], "threshold": cv.threshold,
           "fold_thresholds": cv.fold_thresholds, "calibration_ece": cv.calibration_ece,
           **{k: cv.report[k] for k in ("tp", "fp", "tn", "fn", "precision", "recall",
                                        "roc_auc", "brier")},
           "estimator": cv.estimator,
           "robust": args.robust if cv.estimator == "logistic" else None,
           "threshold_spread": cv.threshold_spread, "fold_costs": cv.fold_costs,
           "baselines": cv.baselines}
    if args.json:
        _print_json(out)
        return 0
    _print_evaluation(args, table, cv, out)
    return 0


def _print_evaluation(args: argparse.Namespace, table: Any, cv: Any, out: dict[str, Any]
                      ) -> None:
    grouped = f", grouped by {args.group}" if args.group else ""
    robust = (" with robust transforms" if args.robust else " on raw inputs"
              ) if cv.estimator == "logistic" else ""
    print(f"{out['rows']} rows, {len(table.features)} features, {cv.folds}-fold stratified"
          f"{grouped}, estimator {cv.estimator}{robust}")
    if table.ignored_columns:
        print(f"left out (not numeric): {', '.join(table.ignored_columns)}")
    if table.unlabelled_rows:
        print(f"left out (empty label): {table.unlabelled_rows} rows")
    print(f"total cost {out['total_cost']:g} (false alarm {args.cost_fp:g}, "
          f"missed failure {args.cost_fn:g})")
    print(f"confusion  tp {out['tp']}  fp {out['fp']}  tn {out['tn']}  fn {out['fn']}")
    spread = cv.threshold_spread
    print(f"threshold  {cv.threshold:.4f} (folds: "
          f"{', '.join(f'{t:.3f}' for t in cv.fold_thresholds)}; spread min {spread['min']:.3f}"
          f" max {spread['max']:.3f} iqr {spread['iqr']:.3f} std {spread['std']:.3f})")
    for name, base in cv.baselines.items():
        print(f"baseline   {_BASELINES.get(name, name)}: cost {base['cost']:g} "
              f"(tp {base['tp']}  fp {base['fp']}  tn {base['tn']}  fn {base['fn']})")


_BASELINES = {"all_negative": "never warn",
              "plain_gbm": "plain gradient boosting (class-weighted, warns at 0.5)"}


def _register_battery_life(msub: SubParsers) -> None:
    bl = msub.add_parser(
        "battery-life", help="when will a battery's capacity reach a threshold?",
        description="Trains on the full histories of --train, then forecasts from the first "
                    "--upto rows of --predict when its value falls to --threshold.")
    bl.add_argument("--train", type=Path, action="append", required=True, metavar="CSV",
                    help="a full history to train on; repeat for several")
    bl.add_argument("--predict", type=Path, required=True, help="the history to forecast")
    bl.add_argument("--upto", type=int, required=True, help="rows of --predict seen so far")
    bl.add_argument("--threshold", type=float, required=True, help="e.g. 1.4 (Ah) or 70 (%%)")
    bl.add_argument("--axis", default="discharge", help="cycle, day or km column")
    bl.add_argument("--value", default="capacity", help="capacity or SoH column")
    bl.add_argument("--json", action="store_true", help="print one JSON object")
    bl.set_defaults(handler=_battery_life)


def _battery_life(args: argparse.Namespace) -> int:
    from models import BatteryLifeForecaster, crossing_index
    from pipeline.ml.tabular import read_history_csv

    train = [read_history_csv(p, args.axis, args.value) for p in args.train]
    t, y = read_history_csv(args.predict, args.axis, args.value)
    if not 2 <= args.upto <= t.size:
        print(f"--upto must be between 2 and {t.size} (rows in {args.predict})",
              file=sys.stderr)
        return 2
    model = BatteryLifeForecaster(threshold=args.threshold).fit_histories(train)
    forecast = model.forecast((t[: args.upto], y[: args.upto]))
    hit = crossing_index(y, args.threshold)
    observed = float(t[hit]) if hit is not None else None
    out = {**dataclasses.asdict(forecast), "threshold": args.threshold,
           "axis": args.axis, "coverage": model.coverage, "observed_crossing": observed,
           "error": forecast.crossing - observed if observed is not None else None}
    if args.json:
        _print_json(out)
        return 0
    print(f"seen {args.upto} rows up to {args.axis} {forecast.now:g}: {args.value} reaches "
          f"{args.threshold:g} at {args.axis} {forecast.crossing:.1f} "
          f"({model.coverage:.0%} interval {forecast.low:.1f} to {forecast.high:.1f})")
    if observed is not None:
        print(f"observed: {observed:g} (error {out['error']:+.1f})")
    else:
        print(f"observed: not reached within the file (last {args.axis} {t[-1]:g})")
    return 0


def _register_registry(msub: SubParsers) -> None:
    ls = msub.add_parser("list", help="registered models, newest first")
    ls.add_argument("--component", help="only this component (default: every component)")
    ls.add_argument("--json", action="store_true",
                    help="one JSON array, an object per model (default: tab-separated lines)")
    show = msub.add_parser("show", help="one model's metadata and metrics")
    show.add_argument("model_id", help="the model's id (models list shows them)")
    show.add_argument("--json", action="store_true",
                      help="the whole registry entry as one JSON object (default: text)")
    promote = msub.add_parser(
        "promote", help="promote a model if it beats the promoted one on the same hold-out",
        description="Compares both models' calls on the held-out vehicles neither trained on, "
                    "which must hold at least 5 failures of the part; with no promoted model, "
                    "the model's own hold-out must hold them. --force promotes anyway.")
    promote.add_argument("model_id", help="the model's id (models list shows them)")
    promote.add_argument("--force", action="store_true",
                         help="promote without the comparison (recorded as forced)")
    for parser, handler in ((ls, _list), (show, _show), (promote, _promote)):
        parser.add_argument("--db", type=Path,
                            help="DuckDB file (default: $FLEETCARE_PIPELINE__DB_PATH)")
        parser.set_defaults(handler=handler)


def _db(args: argparse.Namespace) -> Path:
    from pipeline.config import load_pipeline_settings

    return Path(args.db) if args.db else load_pipeline_settings().db_path


def _list(args: argparse.Namespace) -> int:
    from pipeline.features.daily import COMPONENT_FEATURES
    from pipeline.ml import registry
    from pipeline.store import connection as store

    # Checked here, not with choices=: the list lives with the features, which a parser
    # listing every command should not import.
    if args.component is not None and args.component not in COMPONENT_FEATURES:
        raise ValueError(f"--component {args.component!r} is not a component: use one of "
                         f"{', '.join(COMPONENT_FEATURES)}")
    with store.connect_readonly(_db(args)) as con:
        entries = registry.list_models(con, args.component)
    if args.json:
        _print_json([dataclasses.asdict(e) for e in entries])
        return 0
    print("model_id\tcomponent\tcreated_at\tpromoted\tcost\tprecision\trecall")
    for e in entries:
        held = e.metrics.get("held_out") or {}
        print(f"{e.model_id}\t{e.component}\t{e.created_at:%Y-%m-%d %H:%M:%S}\t"
              f"{'yes' if e.promoted else 'no'}\t{_fmt(held.get('cost'))}\t"
              f"{_fmt(held.get('precision'))}\t{_fmt(held.get('recall'))}")
    return 0


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else format_value(value)


def _show(args: argparse.Namespace) -> int:
    from pipeline.ml import registry
    from pipeline.store import connection as store

    with store.connect_readonly(_db(args)) as con:
        entry = registry.get_model(con, args.model_id)
    if args.json:
        _print_json(dataclasses.asdict(entry))
    else:
        print(format_fields(dataclasses.asdict(entry)))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from pipeline.ml import promotion
    from pipeline.store import connection as store

    with store.connect(_db(args)) as con:
        decision = promotion.promote(con, args.model_id, force=args.force)
    _print_json(decision)
    return 0 if decision["promoted"] else 3
