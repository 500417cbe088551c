"""The demo's control page: inject a fault into one turbine's replayed stream, watch it caught.

A small page on 127.0.0.1 served by the standard library's threading HTTP server (it is part of
the demo, not of the product: the dashboard at the control plane's address is the product).
``GET /`` shows the form and the injected faults, ``POST /inject`` adds one that starts at the
day being replayed, ``GET /faults`` is the table the page reloads every 2 seconds.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import numpy as np

from windfarm import faults
from windfarm.live import InjectedFault

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wind-farm demo controls</title>
<style>
body {{ font: 15px system-ui, sans-serif; margin: 32px; color: #1d2433; background: #f5f7fa; }}
h1 {{ font-size: 20px; }} .panel {{ background: #fff; border: 1px solid #dde3ea;
border-radius: 8px; padding: 16px 20px; margin-bottom: 18px; max-width: 860px; }}
label {{ margin-right: 14px; }} select, button {{ font: inherit; padding: 4px 8px; }}
button {{ background: #2463eb; color: #fff; border: 0; border-radius: 5px; padding: 6px 14px; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left;
padding: 6px 8px; border-bottom: 1px solid #eef1f5; }} .ok {{ color: #13795b; font-weight: 600; }}
.wait {{ color: #a15c00; }} .bad {{ color: #b42318; font-weight: 600; }}
.muted {{ color: #667085; }}
</style></head><body>
<h1>Wind-farm demo: fault injection</h1>
<div class="panel"><p class="muted">The fleet dashboard: <a href="{dashboard}">{dashboard}</a>.
A fault starts at the day the replay is at and lasts {days:g} days; the turbine's agent scores
the changed windows. Bound: the number of 1-hour windows within which the model flags each kind
(docs/windfarm.md, "Fault injection").</p>
<form method="post" action="/inject">
<label>Turbine <select name="turbine">{turbines}</select></label>
<label>Fault <select name="kind">{kinds}</select></label>
<button type="submit">Inject</button></form></div>
<div class="panel"><h2 style="font-size:16px">Injected faults</h2>
<div id="faults">{table}</div></div>
<script>
setInterval(async () => {{
  const reply = await fetch("/faults");
  if (reply.ok) document.getElementById("faults").innerHTML = await reply.text();
}}, 2000);
</script></body></html>
"""


def _table(entries: list[InjectedFault], replay_day: str) -> str:
    rows = []
    for entry in entries:
        bound = faults.BOUNDS[entry.fault.kind]
        if entry.delay is not None:
            cls = "ok" if entry.delay <= bound else "bad"
            state = f"flagged after {entry.delay} window(s)"
        elif entry.affected:
            cls, state = "wait", f"{entry.affected} window(s) changed, not flagged yet"
        else:
            cls, state = "wait", "waiting for the replay to reach it"
        rows.append(
            f"<tr><td>{html.escape(entry.fault.turbine)}</td><td>{entry.fault.kind}</td>"
            f"<td>{np.datetime_as_string(entry.fault.start, unit='h')}</td>"
            f"<td>{html.escape(entry.source)}</td><td>{bound}</td>"
            f"<td class=\"{cls}\">{state}</td></tr>")
    body = "".join(rows) or "<tr><td colspan=6 class=muted>none yet</td></tr>"
    return (f"<p class=muted>replaying {replay_day}</p><table><tr><th>turbine</th><th>fault</th>"
            "<th>from (UTC)</th><th>injected by</th><th>bound</th><th>state</th></tr>"
            f"{body}</table>")


class ControlPage:
    """The control page's server, in a daemon thread; a context manager.

    Args:
        port: TCP port on 127.0.0.1.
        turbines: the turbines one may choose.
        inject: called with (kind, turbine) when the form is sent; a ValueError it raises
            is answered 400 with its message.
        entries: returns the injected faults to show.
        replay_day: returns the day being replayed, as text.
        dashboard: the dashboard's address, linked from the page.
        days: how long an injected fault lasts.
    """

    def __init__(self, port: int, *, turbines: list[str], inject: Callable[[str, str], None],
                 entries: Callable[[], list[InjectedFault]], replay_day: Callable[[], str],
                 dashboard: str, days: float) -> None:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet terminal
                return

            def _send(self, status: int, body: str, **headers: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/faults":
                    self._send(HTTPStatus.OK, _table(entries(), replay_day()))
                elif self.path == "/":
                    self._send(HTTPStatus.OK, page.render(entries(), replay_day()))
                else:
                    self._send(HTTPStatus.NOT_FOUND, "not found")

            def do_POST(self) -> None:
                if self.path != "/inject":
                    self._send(HTTPStatus.NOT_FOUND, "not found")
                    return
                length = min(int(self.headers.get("Content-Length") or 0), 4096)
                form = parse_qs(self.rfile.read(length).decode(errors="replace"))
                kind = form.get("kind", [""])[0]
                turbine = form.get("turbine", [""])[0]
                if kind not in faults.KINDS or turbine not in turbines:
                    self._send(HTTPStatus.BAD_REQUEST,
                               f"unknown fault {kind!r} or turbine {turbine!r}")
                    return
                try:
                    inject(kind, turbine)
                except ValueError as error:  # e.g. the replay has passed the last day
                    self._send(HTTPStatus.BAD_REQUEST, html.escape(str(error)))
                    return
                self._send(HTTPStatus.SEE_OTHER, "", Location="/")

        self.turbines = turbines
        self.dashboard = dashboard
        self.days = days
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="control-page")

    def render(self, entries: list[InjectedFault], replay_day: str) -> str:
        """The whole page."""
        options = "".join(f"<option>{html.escape(t)}</option>" for t in self.turbines)
        kinds = "".join(f"<option>{k}</option>" for k in faults.KINDS)
        return _PAGE.format(dashboard=html.escape(self.dashboard), days=self.days,
                            turbines=options, kinds=kinds, table=_table(entries, replay_day))

    def __enter__(self) -> ControlPage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
