"""Headless Chromium for tests: load a page, see what a person's browser would complain about.

Pages are judged in a real browser because a page that parses on the server can still throw
in the browser, fetch a missing file or draw nothing. Chromium (Debian's ``chromium``, which
``.ci/run`` installs) is driven over the Chrome DevTools Protocol on its own pipe
(``--remote-debugging-pipe``: commands on fd 3, answers on fd 4, each message JSON ended by a
NUL byte), so no websocket client, no port and no downloaded browser are needed.

Typical use::

    pytestmark = [pytest.mark.browser, needs_chromium]

    with Browser() as browser:
        page = browser.open("http://127.0.0.1:8765/")
        assert page.console_errors == ()
        assert page.count("svg") == 3
        page.screenshot(artifact_path("index.png"))
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

__all__ = [
    "Browser",
    "BrowserError",
    "FailedRequest",
    "Page",
    "artifact_path",
    "chromium_path",
    "needs_chromium",
]

_REPO = Path(__file__).resolve().parent.parent


def chromium_path() -> str | None:
    """The Chromium to drive: ``FLEETCARE_CHROMIUM`` if set, else ``chromium`` on PATH."""
    return os.environ.get("FLEETCARE_CHROMIUM") or shutil.which("chromium")


needs_chromium = pytest.mark.skipif(
    chromium_path() is None,
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")


def artifact_path(name: str) -> Path:
    """Where a test keeps ``name`` for people to look at after the run (a screenshot, say):
    ``$FLEETCARE_TEST_ARTIFACTS`` or ``test-artifacts/`` at the repository's root."""
    root = Path(os.environ.get("FLEETCARE_TEST_ARTIFACTS") or _REPO / "test-artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root / name


class BrowserError(RuntimeError):
    """Chromium could not be started, answered with an error, or took too long."""


@dataclass(frozen=True)
class FailedRequest:
    """A request the page made that did not succeed: an HTTP error status or no answer."""

    url: str
    status: int | None
    reason: str


class _Pipe:
    """The DevTools pipe of one Chromium process: send a command, wait for its answer, and
    keep every event that arrives meanwhile for whoever asks about it later."""

    def __init__(self, process: subprocess.Popen[bytes], send_fd: int, receive_fd: int) -> None:
        self._process = process
        self._send_fd = send_fd
        self._receive_fd = receive_fd
        self._ids = itertools.count(1)
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, timeout: float = 60.0,
             **params: Any) -> dict[str, Any]:
        """Send ``method`` and return its result; BrowserError for an error answer."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for received in self._receive(deadline, method):
                if received.get("id") == message_id:
                    if "error" in received:
                        raise BrowserError(f"{method}: {received['error'].get('message')}")
                    result: dict[str, Any] = received.get("result", {})
                    return result
                self.events.append(received)

    def close(self) -> None:
        """Close this side of both pipes (Chromium sees its end of the conversation)."""
        os.close(self._send_fd)
        os.close(self._receive_fd)

    def wait_for_event(self, method: str, session: str, timeout: float = 60.0) -> dict[str, Any]:
        """The first not yet consumed event ``method`` of ``session``, waiting if need be."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    del self.events[index]
                    return event
            self.events.extend(self._receive(deadline, method))

    def _receive(self, deadline: float, waiting_for: str) -> list[dict[str, Any]]:
        """The messages that have arrived, waiting until at least one has or ``deadline``."""
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer from chromium to {waiting_for} in time")
            ready, _, _ = select.select([self._receive_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._receive_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited (code {self._process.poll()}) "
                                   f"while waiting for {waiting_for}")
            self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(raw) for raw in complete if raw]


def _high_pipe() -> tuple[int, int]:
    """A pipe whose ends are numbered 10 or above, so that moving them onto the child's fds 3
    and 4 can never overwrite one end with the other."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class Page:
    """One loaded tab: what went wrong while it loaded, and questions about its DOM."""

    def __init__(self, pipe: _Pipe, session: str, url: str) -> None:
        self._pipe = pipe
        self._session = session
        self.url = url
        self._status: int | None = None
        self._console_errors: list[str] = []
        self._failed: list[FailedRequest] = []
        self._requested: dict[str, str] = {}

    @property
    def status(self) -> int | None:
        """The HTTP status the document itself was served with (None for a file)."""
        self._collect()
        return self._status

    @property
    def console_errors(self) -> tuple[str, ...]:
        """Errors the page logged or threw, and errors the browser logged about it."""
        self._collect()
        return tuple(self._console_errors)

    @property
    def failed_requests(self) -> tuple[FailedRequest, ...]:
        """Requests (the document's own included) answered with a status of 400 or more,
        or not answered at all."""
        self._collect()
        return tuple(self._failed)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript ``expression`` in the page (JSON-able values only)."""
        result = self._pipe.call("Runtime.evaluate", self._session, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluating {expression!r}: {text}")
        return result["result"].get("value")

    def count(self, selector: str) -> int:
        """How many elements match the CSS ``selector``."""
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    def text(self, selector: str = "body") -> str:
        """The rendered text of the first element matching ``selector`` ('' if none)."""
        found = self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText")
        return str(found)

    def texts(self, selector: str) -> list[str]:
        """The rendered text of every element matching ``selector``, in document order."""
        found = self.evaluate(f"Array.from(document.querySelectorAll({json.dumps(selector)}),"
                              " e => e.innerText ?? e.textContent)")
        return [str(item) for item in found]

    def screenshot(self, path: Path) -> Path:
        """Save the whole page (not only the window) as a PNG at ``path``."""
        metrics = self._pipe.call("Page.getLayoutMetrics", self._session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self._pipe.call("Page.captureScreenshot", self._session, format="png",
                               captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": size["width"],
                                     "height": size["height"], "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def _collect(self) -> None:
        """Move this tab's console and network events into the page's lists."""
        self._pipe.call("Runtime.evaluate", self._session, expression="0")  # flush events
        kept = []
        for event in self._pipe.events:
            if event.get("sessionId") != self._session or not self._note(event):
                kept.append(event)
        self._pipe.events[:] = kept

    def _note(self, event: dict[str, Any]) -> bool:
        """Record ``event`` if it says something went wrong; True if it was this page's."""
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            if params.get("type") in ("error", "assert"):
                words = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
                self._console_errors.append(" ".join(words))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self._console_errors.append(
                details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            if entry.get("level") == "error":
                self._console_errors.append(f"{entry.get('text')} ({entry.get('url', '')})")
        elif method == "Network.requestWillBeSent":
            self._requested[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            response = params["response"]
            if params.get("type") == "Document" and self._status is None:
                self._status = int(response["status"])
            if int(response["status"]) >= 400:
                self._failed.append(FailedRequest(response["url"], int(response["status"]),
                                                  response.get("statusText", "")))
        elif method == "Network.loadingFailed":
            url = self._requested.get(params["requestId"], params["requestId"])
            self._failed.append(FailedRequest(url, None, params.get("errorText", "")))
        else:
            return False
        return True


class Browser:
    """One headless Chromium process with a throw-away profile; a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self._width = width
        self._height = height
        self._timeout = timeout
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: _Pipe | None = None

    def __enter__(self) -> Browser:
        executable = chromium_path()
        if executable is None:
            raise BrowserError("chromium is not installed")
        self._profile = tempfile.TemporaryDirectory(prefix="fleetcare-chromium-")
        to_browser_read, to_browser_write = _high_pipe()
        from_browser_read, from_browser_write = _high_pipe()

        def put_pipes_on_3_and_4() -> None:  # in the child, between fork and exec
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self._process = subprocess.Popen(
            [executable, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
             "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-sync",
             "--disable-component-update", "--mute-audio", "--hide-scrollbars",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=put_pipes_on_3_and_4, close_fds=False)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._pipe = _Pipe(self._process, to_browser_write, from_browser_read)
        return self

    def open(self, target: str | Path) -> Page:
        """A new tab showing ``target`` (a URL, or a local file), once its load event fired."""
        pipe = self._require_pipe()
        url = target.resolve().as_uri() if isinstance(target, Path) else target
        created = pipe.call("Target.createTarget", url="about:blank")
        attached = pipe.call("Target.attachToTarget", targetId=created["targetId"], flatten=True)
        session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.call(f"{domain}.enable", session)
        pipe.call("Emulation.setDeviceMetricsOverride", session, width=self._width,
                  height=self._height, deviceScaleFactor=1, mobile=False)
        page = Page(pipe, session, url)
        navigated = pipe.call("Page.navigate", session, url=url)
        if navigated.get("errorText"):
            raise BrowserError(f"could not load {url}: {navigated['errorText']}")
        pipe.wait_for_event("Page.loadEventFired", session, self._timeout)
        return page

    def _require_pipe(self) -> _Pipe:
        if self._pipe is None:
            raise BrowserError("use Browser as a context manager: with Browser() as browser")
        return self._pipe

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._pipe is not None:
            with contextlib.suppress(BrowserError, OSError):
                self._pipe.call("Browser.close", timeout=10)
            self._pipe.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._profile is not None:
            self._profile.cleanup()
