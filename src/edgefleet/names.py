"""Names with a meaning on the wire, shared by the agent, packages and the control plane."""

from __future__ import annotations

import re

from edgefleet.errors import InvalidArgument, echo

#: Model aliases and model names, from the SageMaker agent API (no dots, no underscores).
ALIAS_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")

#: Longest alias accepted; the original API set none, this keeps file and metric names sane.
MAX_ALIAS_LENGTH = 100


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid model alias (also the rule for package model names).

    Raises:
        InvalidArgument: empty, longer than ``MAX_ALIAS_LENGTH``, or not matching
            ``ALIAS_PATTERN``.
    """
    if not alias:
        raise InvalidArgument("no model name given: set `name` (or `handle`) in the request")
    # fullmatch: with match, "$" would also accept a trailing newline.
    if len(alias) > MAX_ALIAS_LENGTH or not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidArgument(
            f"model name {echo(alias)!r} is not valid: use letters, digits and single or repeated "
            f"hyphens between them (pattern {ALIAS_PATTERN.pattern}, at most "
            f"{MAX_ALIAS_LENGTH} characters; no dots, no underscores)")
    return alias
