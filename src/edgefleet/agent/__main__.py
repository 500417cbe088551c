"""``python -m edgefleet.agent``: the same as ``edgefleet-agent``."""

from edgefleet.agent.cli import main

main()
