"""Command-line front of advice and CRM delivery: ``crm``, ``leads``, ``campaigns``, ``report``.

Heavy modules are imported inside the handlers, so listing commands stays cheap. Signing keys
come from ``FLEETCARE_PIPELINE__CRM_SECRET`` (never an argument, so they stay out of shell
history); during a rotation it holds several ``whsec_`` keys separated by spaces, newest last.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli.text import format_fields

SubParsers = argparse._SubParsersAction
DEFAULT_INBOX = Path("crm-inbox.jsonl")
LEAD_STATES = ("new", "sent", "acknowledged", "booked", "done", "dismissed", "held")
"""``leads list --state``'s choices: :data:`pipeline.leads.lifecycle.ORDER` and
:data:`pipeline.leads.holds.HELD`, written out so ``--help`` loads neither (a test holds them
equal)."""


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _secrets() -> list[str]:
    """The live signing keys, oldest first (empty when none is configured)."""
    from pipeline.config import load_pipeline_settings

    return load_pipeline_settings().crm_secret.get_secret_value().replace(",", " ").split()


_NO_SECRET = ("set FLEETCARE_PIPELINE__CRM_SECRET (whsec_...; during a rotation several keys "
              "separated by spaces, newest last)")


def _db(args: argparse.Namespace) -> Path:
    """``--db``, else ``FLEETCARE_PIPELINE__DB_PATH``, else ./fleet.duckdb."""
    from pipeline.config import load_pipeline_settings

    return Path(args.db) if args.db else load_pipeline_settings().db_path


def _now(args: argparse.Namespace) -> dt.datetime:
    raw = getattr(args, "now", None)
    return dt.datetime.fromisoformat(raw).astimezone(dt.UTC) if raw else dt.datetime.now(dt.UTC)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path,
                        help="DuckDB file (default: $FLEETCARE_PIPELINE__DB_PATH)")


def register_crm(sub: SubParsers) -> None:
    """``fleetcare crm serve|inbound|deliver``."""
    crm = sub.add_parser("crm", help="CRM side: reference receiver, inbound updates, delivery",
                         description="Signed webhooks both ways (Standard Webhooks).")
    crm_sub = crm.add_subparsers(dest="crm_command", metavar="SUBCOMMAND", required=True)
    serve = crm_sub.add_parser("serve", help="the reference CRM: receive signed leads over HTTP",
                               description="Keys come from FLEETCARE_PIPELINE__CRM_SECRET.")
    serve.add_argument("--port", type=int, default=8787, help="TCP port on 127.0.0.1")
    serve.add_argument("--status-url", help="fleetcare's inbound endpoint for advisors' actions")
    serve.set_defaults(handler=_crm_serve)
    inbound = crm_sub.add_parser("inbound", help="receive status updates from the CRM",
                                 description="Verify, validate and fsync each update to the "
                                             "inbox; `leads apply-inbound` applies them.")
    inbound.add_argument("--port", type=int, default=8788, help="TCP port on 127.0.0.1")
    inbound.add_argument("--inbox", type=Path, default=DEFAULT_INBOX,
                         help="JSONL file the verified updates are appended to")
    inbound.set_defaults(handler=_crm_inbound)
    deliver = crm_sub.add_parser("deliver", help="send due outbox rows to the CRM now")
    _add_db(deliver)
    deliver.add_argument("--url", help="CRM endpoint (default: $FLEETCARE_PIPELINE__CRM_URL)")
    deliver.add_argument("--format", choices=("json", "salesforce", "adf"), default="json",
                         help="payload the CRM takes: fleetcare's lead document, a "
                              "Salesforce Lead, or ADF XML")
    deliver.set_defaults(handler=_crm_deliver)


def _crm_serve(args: argparse.Namespace) -> int:
    from pipeline.sandbox.reference_crm import serve_forever

    keys = _secrets()
    if not keys:
        print(_NO_SECRET, file=sys.stderr)
        return 2
    print(f"CRM receiver on http://127.0.0.1:{args.port}/leads", file=sys.stderr)
    serve_forever(keys, args.port, status_url=args.status_url)
    return 0


def _crm_inbound(args: argparse.Namespace) -> int:
    from pipeline.config import load_pipeline_settings
    from pipeline.crm.inbound import INBOUND_PATH, Inbox, inbound_server
    from pipeline.foreground import run_until_terminated

    keys = _secrets()
    if not keys:
        print(_NO_SECRET, file=sys.stderr)
        return 2
    settings = load_pipeline_settings()
    server = inbound_server(keys, Inbox(args.inbox), port=args.port,
                            max_body=settings.http_max_body_bytes,
                            request_timeout_s=settings.http_request_timeout_s,
                            max_connections=settings.http_max_connections)
    print(f"status updates on {server.base_url}{INBOUND_PATH} -> {args.inbox}", file=sys.stderr)
    run_until_terminated(server)
    return 0


def _crm_deliver(args: argparse.Namespace) -> int:
    from pipeline.config import load_pipeline_settings
    from pipeline.crm import outbox
    from pipeline.store import connection as store

    # Settings (a malformed CRM secret among them), the URL and the keys are all checked
    # before the store is opened, so a refused start writes nothing.
    url = outbox.check_endpoint(args.url or load_pipeline_settings().crm_url)
    keys = _secrets()
    if not keys:
        print(_NO_SECRET, file=sys.stderr)
        return 2
    with store.connect(_db(args)) as con:
        report = outbox.deliver_outbox(con, url=url, secret=keys,
                                       payload_format=args.format)
    _print_json(dataclasses.asdict(report))
    return 0


def register_leads(sub: SubParsers) -> None:
    """``fleetcare leads list|show|apply-inbound``."""
    leads = sub.add_parser("leads", help="list and show maintenance leads",
                           description="Leads in the store, with their state.")
    leads_sub = leads.add_subparsers(dest="leads_command", metavar="SUBCOMMAND", required=True)
    show_all = leads_sub.add_parser("list", help="one line per lead, newest first")
    _add_db(show_all)
    show_all.add_argument("--state", choices=LEAD_STATES,
                          help="only leads in this state (default: every state)")
    show_all.add_argument("--held", action="store_true",
                          help="only held leads (never sent: no customer on record, no consent "
                               "to contact, another VIN, stale evidence), with the reason "
                               "(default: every state)")
    show_all.add_argument("--json", action="store_true",
                          help="one JSON array, an object per lead (default: tab-separated "
                               "lines)")
    show_all.set_defaults(handler=_leads_list)
    show = leads_sub.add_parser("show", help="the full lead document")
    show.add_argument("lead_id", help="the lead's id (leads list shows them)")
    _add_db(show)
    show.add_argument("--json", action="store_true",
                      help="the lead document as one JSON object (default: text)")
    show.set_defaults(handler=_leads_show)
    apply = leads_sub.add_parser("apply-inbound", help="apply the CRM's status updates")
    _add_db(apply)
    apply.add_argument("--inbox", type=Path, default=DEFAULT_INBOX,
                       help="the JSONL inbox crm inbound writes")
    apply.set_defaults(handler=_leads_apply)


def _leads_list(args: argparse.Namespace) -> int:
    from pipeline.leads import listing as leads
    from pipeline.leads.holds import HELD, explain
    from pipeline.store import connection as store

    if args.held and args.state not in (None, HELD):
        print(f"fleetcare leads list: --held lists state {HELD}; drop --state {args.state}",
              file=sys.stderr)
        return 2
    with store.connect_readonly(_db(args)) as con:
        rows = leads.list_leads(con, state=HELD if args.held else args.state)
    if args.json:
        _print_json([dataclasses.asdict(r) for r in rows])
        return 0
    if args.held:
        print("lead_id\tvehicle\tcomponent\tseverity\thold_reason\twhy")
        for r in rows:
            print(f"{r.lead_id}\t{r.vehicle_id}\t{r.component}\t{r.severity}\t"
                  f"{r.hold_reason}\t{explain(r.hold_reason or '')}")
        return 0
    print("lead_id\tvehicle\tcomponent\tseverity\tstate\tbasis\thorizon_days")
    for r in rows:
        print(f"{r.lead_id}\t{r.vehicle_id}\t{r.component}\t{r.severity}\t{r.state}\t"
              f"{r.basis}\t{r.horizon_days}")
    return 0


def _leads_show(args: argparse.Namespace) -> int:
    from pipeline.leads import listing as leads
    from pipeline.store import connection as store

    with store.connect_readonly(_db(args)) as con:
        document = leads.lead_document(con, args.lead_id)
    if document is None:
        print(f"no lead {args.lead_id} in {_db(args)}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(document)
    else:
        print(format_fields(document))
    return 0


def _leads_apply(args: argparse.Namespace) -> int:
    from pipeline.leads.lifecycle import apply_inbound
    from pipeline.store import connection as store

    with store.connect(_db(args)) as con:
        _print_json(dataclasses.asdict(apply_inbound(con, args.inbox)))
    return 0


def register_campaigns(sub: SubParsers) -> None:
    """``fleetcare campaigns winter|reminders|follow-ups``."""
    camp = sub.add_parser("campaigns", help="seasonal and follow-up campaigns",
                          description="Each contact is queued in the outbox once.")
    camp_sub = camp.add_subparsers(dest="campaign", metavar="CAMPAIGN", required=True)
    for name, helptext in (("winter", "pre-winter 12 V check in regions turning cold"),
                           ("reminders", "open advisories without a visit in 90 days"),
                           ("follow-ups", "follow-ups due 24 h after a visit")):
        parser = camp_sub.add_parser(name, help=helptext)
        _add_db(parser)
        parser.add_argument("--now", help="ISO time to run as (default: now)")
        parser.set_defaults(handler=_campaign)
        if name == "winter":
            parser.add_argument("--threshold-c", type=float, default=0.0,
                                help="a region is turning cold when a forecast minimum in "
                                     "the next 14 days is below this many degrees Celsius")
            parser.add_argument("--forecast", type=Path,
                                help="CSV region,day,min_temp_c to load into region_forecasts")


def _campaign(args: argparse.Namespace) -> int:
    from pipeline.leads import campaigns
    from pipeline.store import connection as store

    with store.connect(_db(args)) as con:
        if args.campaign == "winter":
            if args.forecast:
                con.execute("INSERT OR REPLACE INTO region_forecasts SELECT region,"
                            " CAST(day AS DATE), CAST(min_temp_c AS DOUBLE)"
                            " FROM read_csv(?, header = true)", [str(args.forecast)])
            report = campaigns.pre_winter_battery_check(con, now=_now(args),
                                                        threshold_c=args.threshold_c)
        elif args.campaign == "reminders":
            report = campaigns.visit_reminders(con, now=_now(args))
        else:
            report = campaigns.send_follow_ups(con, now=_now(args))
    _print_json(dataclasses.asdict(report))
    return 0


def register_report(sub: SubParsers) -> None:
    """``fleetcare report``: the manager's report for a period, and today's call list."""
    rep = sub.add_parser(
        "report", help="manager's report: service KPIs per centre, today's calls, hot spots",
        description="An HTML page with PNG charts (or the same figures as JSON): per service "
                    "centre the response times and follow-ups of the period, whom to call "
                    "today, and where the fleet fails. Figures from fewer than 5 cases are "
                    "marked small n.")
    _add_db(rep)
    rep.add_argument("--out", type=Path, default=Path("fleet-report"),
                     help="output folder (default: fleet-report)")
    span = rep.add_mutually_exclusive_group()
    span.add_argument("--period-days", type=int, metavar="N",
                      help="the N days ending on --until (default: 30)")
    span.add_argument("--since", type=_date, metavar="DATE",
                      help="first day of the period (YYYY-MM-DD, UTC)")
    rep.add_argument("--until", type=_date, metavar="DATE",
                     help="last day of the period, included (default: --today)")
    rep.add_argument("--today", type=_date, metavar="DATE",
                     help="the call list's day (default: today, UTC)")
    rep.add_argument("--json", action="store_true",
                     help="print the figures as JSON instead of the page's path")
    rep.set_defaults(handler=_report)


def _date(raw: str) -> dt.date:
    """A ``YYYY-MM-DD`` option value, refused in one line otherwise."""
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date: write YYYY-MM-DD") from None


def _report(args: argparse.Namespace) -> int:
    from pipeline.report import as_data, resolve_period, write_report
    from pipeline.store import connection as store

    period = resolve_period(today=args.today, period_days=args.period_days,
                            since=args.since, until=args.until)
    with store.connect_readonly(_db(args)) as con:
        written = write_report(con, args.out, period)
    if args.json:
        _print_json({"html_path": str(written.html_path), **as_data(written.report)})
    else:
        print(written.html_path)
    return 0
