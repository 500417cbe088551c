"""``python -m edgefleet.fleet ...``: the control-plane commands (see ``edgefleet.fleet.cli``)."""

from edgefleet.fleet.cli import main

main()
