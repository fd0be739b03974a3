"""The console's web application: a Starlette app over one store file, read-only.

Each request opens the store read-only and closes it before answering, so the console never
holds a lock between requests: a flow run or an import can take the write lock whenever no
page is being drawn. While a writer holds the file DuckDB refuses readers too; the page then
says so (503, ``Retry-After``) instead of waiting or failing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import duckdb
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline.console import evidence, pages
from pipeline.errors import StoreError
from pipeline.store.connection import connect_readonly

RETRY_AFTER_S: Final = 2
_Page = Callable[[duckdb.DuckDBPyConnection], Response]


def root_of(path: str) -> str:
    """How a page at ``path`` links to the console's root, relatively (``./`` for ``/``,
    ``../`` for ``/leads/x``), so the pages work behind a proxy that adds a path prefix."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


@contextmanager
def _reading(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect_readonly(db_path)
    try:
        yield con
    finally:
        con.close()


_HEADERS: Final = {"cache-control": "no-store",
                   "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                              "img-src data:"}
"""No caching (a lead's state changes), and a policy that lets a page load nothing but itself."""


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**_HEADERS, **(headers or {})})


def create_app(db_path: Path, *, recent: int = 100) -> Starlette:
    """The console for the store at ``db_path`` (pages listed in docs/console.md)."""

    def answer(request: Request, draw: _Page) -> Response:
        root = root_of(request.url.path)
        try:
            with _reading(db_path) as con:
                return draw(con)
        except StoreError as exc:
            if _busy(exc):
                return _html(pages.busy_page(str(exc), root), 503,
                             {"retry-after": str(RETRY_AFTER_S)})
            return _html(pages.busy_page(f"{db_path} cannot be read: {exc}", root), 500)
        except duckdb.Error as exc:  # a file that is not (or not yet) a fleetcare store
            return _html(pages.busy_page(f"{db_path} is not a readable fleetcare store: "
                                         f"{exc}", root), 500)

    def index(request: Request) -> Response:
        return answer(request, lambda con: _html(
            pages.index_page(evidence.recent_leads(con, recent), root_of(request.url.path))))

    def lead(request: Request) -> Response:
        lead_id, root = request.path_params["lead_id"], root_of(request.url.path)

        def draw(con: duckdb.DuckDBPyConnection) -> Response:
            found = evidence.lead(con, lead_id)
            if found is None:
                return _html(pages.not_found_page(f"No lead {lead_id} in this store.", root),
                             404)
            history = evidence.vehicle_history(con, found.vehicle_id)
            return _html(pages.lead_page(found, history, root))
        return answer(request, draw)

    def vehicle(request: Request) -> Response:
        vehicle_id, root = request.path_params["vehicle_id"], root_of(request.url.path)

        def draw(con: duckdb.DuckDBPyConnection) -> Response:
            history = evidence.vehicle_history(con, vehicle_id)
            if history is None:
                return _html(pages.not_found_page(f"No vehicle {vehicle_id} in this store.",
                                                  root), 404)
            return _html(pages.vehicle_page(history, evidence.vehicle_leads(con, vehicle_id),
                                            root))
        return answer(request, draw)

    def healthz(request: Request) -> Response:
        try:
            with _reading(db_path) as con:
                con.execute("SELECT count(*) FROM leads").fetchone()
        except (StoreError, duckdb.Error) as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, 503,
                                headers={"retry-after": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ok", "store": str(db_path)})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return _html(pages.not_found_page(f"There is no page at {request.url.path}.",
                                              root_of(request.url.path)), 404)
        return _html(pages.layout("Error", f"<h1>{status}</h1>", root_of(request.url.path)),
                     status)

    routes = [Route("/", index), Route("/leads/{lead_id}", lead),
              Route("/vehicles/{vehicle_id}", vehicle), Route("/healthz", healthz)]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


def _busy(exc: StoreError) -> bool:
    """True when the store is locked by a writer (worth retrying), not missing or broken."""
    return "lock" in str(exc).lower()
