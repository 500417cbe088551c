"""Parsing JSON documents that may come from anyone: packages, configs, state files.

Python's :func:`json.loads` fails in three ways besides :class:`json.JSONDecodeError`:
:class:`UnicodeDecodeError` for bytes that are not UTF-8, :class:`ValueError` for an integer
of more than :func:`sys.get_int_max_str_digits` digits (4,300 by default, CPython's guard
against quadratic conversion), and :class:`RecursionError` for arrays or objects nested
deeper than the interpreter's stack allows. :func:`loads` turns all of them into one
:class:`ValueError` whose message says what was wrong, so a caller catches one type.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def loads(data: bytes | str) -> Any:
    """Parse ``data`` (UTF-8 bytes or text) as one JSON document.

    Returns:
        The document as Python objects (dict, list, str, int, float, bool, None).

    Raises:
        ValueError: not UTF-8, not JSON, an integer of more digits than
            :func:`sys.get_int_max_str_digits`, or nesting too deep to parse; the message
            says which (for a syntax error, with its line and column).
    """
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise ValueError(f"{error.msg} at line {error.lineno}, column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {error.start}: {error.reason})") from None
    except RecursionError:
        raise ValueError("arrays or objects nested too deeply") from None
    except ValueError as error:  # the integer digit limit
        if "integer string conversion" not in str(error):
            raise
        raise ValueError(f"an integer of more than {sys.get_int_max_str_digits()} "
                         f"digits") from None
