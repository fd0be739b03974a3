"""What ``make demo`` leaves in its output folder, and the next steps it ends with.

A newcomer reads the printout once and then looks at files, so the demo writes what it
showed: the fleet report (``report.html``, what ``fleetcare report`` writes), every
lead it made (``leads.json``) and every lead the CRM received (``crm-received.json``). The
next steps are command lines that work in a *fresh* shell, one without the venv activated:
each names the venv's own ``fleetcare`` and ``python`` by path, relative to the directory the
demo ran in when the venv is inside it (as ``make demo`` has it), else absolute.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.leads import listing
from pipeline.report import write_report
from pipeline.store import connection as store

ALL_LEADS = 1_000_000
"""More leads than any demo makes: ``leads.json`` holds every one."""


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo's results were written."""

    report_html: Path
    leads_json: Path
    crm_received_json: Path


def write_outputs(output_dir: Path, db_path: Path,
                  crm_leads: Sequence[dict[str, Any]]) -> DemoFiles:
    """Write the report, the leads and what the CRM received into ``output_dir``."""
    files = DemoFiles(output_dir / "report.html", output_dir / "leads.json",
                      output_dir / "crm-received.json")
    with store.connect_readonly(db_path) as con:
        write_report(con, output_dir)
        leads = [dataclasses.asdict(summary) | {"document": listing.lead_document(
                     con, summary.lead_id)}
                 for summary in listing.list_leads(con, limit=ALL_LEADS)]
    _write_json(files.leads_json, leads)
    _write_json(files.crm_received_json, list(crm_leads))
    return files


def _write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, renamed into place so no half file is left."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2))
    os.replace(partial, path)


def venv_command(name: str) -> str:
    """The path of this environment's ``name`` script (``fleetcare``, ``python``), as a
    fresh shell in the current directory can run it without activating anything."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        return name
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def next_steps(files: DemoFiles, db_path: str) -> list[str]:
    """The report's closing lines: files to open and commands to run next."""
    fleetcare, python = venv_command("fleetcare"), venv_command("python")
    query = ("SELECT signal, count(*) FROM telemetry GROUP BY 1 ORDER BY 2 DESC")
    return [
        "what the demo left:",
        f"  {files.report_html}   the fleet report (open it in a browser)",
        f"  {files.leads_json}   every lead, with the document sent",
        f"  {files.crm_received_json}   what the CRM received",
        "",
        "where to look next (each line runs as is, in a fresh shell, from this directory):",
        f"  {fleetcare} leads list --db {db_path}",
        f"  {fleetcare} leads list --held --db {db_path}",
        f"  {fleetcare} fleet coverage --db {db_path}",
        f"  {python} -c \"import duckdb; print(duckdb.connect('{db_path}', read_only=True)"
        f".sql('{query}'))\"",
        f"  evidence pages per lead and vehicle: {fleetcare} console --db {db_path}",
        "  (then http://127.0.0.1:8765/ in a browser; Ctrl-C stops it)",
        "  docs/reference/store.md: the store's tables; docs/getting-started.md: each part",
        "  alone; docs/design.md: scaling out",
    ]
