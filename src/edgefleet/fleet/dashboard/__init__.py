"""The web dashboard of ``edgefleet server``: server-rendered pages over the fleet services.

Pages (Jinja2 templates, no third-party JavaScript; charts are SVG drawn by matplotlib on the
server) sit behind the admin login (:mod:`.session`); :mod:`.views` holds the dashboard's own
aggregate queries and the layout of a captured record's tensors, :mod:`.charts` the plots,
:mod:`.routes` the thin handlers. Pages update
themselves by short polling of their own HTML (``?fragment=1``), see docs/dashboard.md.
"""

from edgefleet.fleet.dashboard.routes import router

__all__ = ["router"]
