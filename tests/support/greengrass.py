"""What the Greengrass nucleus does to a component's configuration, for the component's tests."""

from __future__ import annotations

import json


def as_text(value: object) -> str:
    """A configuration value as the nucleus interpolates it: a value node's text (Jackson's
    ``asText``), a container as compact JSON with sorted keys."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)
