"""``python -m windfarm``: run the wind-farm demo (see :mod:`windfarm.demo`)."""

from windfarm.demo import app

app(prog_name="scripts/demo")
