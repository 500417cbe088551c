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


#: Longest tensor or auxiliary-data name accepted on the wire, in bytes of UTF-8. The original
#: API set no limit; ONNX names such as ``StatefulPartitionedCall/model/dense/BiasAdd:0`` stay
#: far below it, and a bound keeps every message that names one under gRPC's 16 KiB metadata.
MAX_NAME_BYTES = 1024


def wire_name(raw: bytes | str, what: str) -> str:
    """A tensor or auxiliary-data name from a request, decoded and bounded.

    Args:
        raw: the name as the message carries it (``bytes`` for ``TensorMetadata.name``,
            ``str`` for ``AuxiliaryData.name``).
        what: what the name is, for messages (e.g. ``"tensor name"``).

    Raises:
        InvalidArgument: longer than :data:`MAX_NAME_BYTES` bytes, or not UTF-8; the message
            shows at most the first ``MAX_ECHO_CHARS`` characters of it.
    """
    size = len(raw if isinstance(raw, bytes) else raw.encode())
    if size > MAX_NAME_BYTES:
        shown = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        raise InvalidArgument(
            f"{what} {echo(shown)!r} is {size} bytes long; names may have at most "
            f"{MAX_NAME_BYTES} bytes of UTF-8")
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what} {echo(repr(raw))} is not UTF-8") from None
