"""Write the component's configuration to a JSON file for ``edgefleet-agent``.

    python greengrass_config.py OUTPUT.json

The recipe's Run step sets one environment variable per parameter,
``EDGEFLEET_GG_<Parameter>``, to ``{configuration:/<Parameter>}``; Greengrass replaces that
with the parameter's value as text (an object as its JSON). This script writes those values as
one JSON object, ``{"<Parameter>": "<text>", ...}``, which
``edgefleet-agent --from-greengrass-config OUTPUT.json`` reads and checks (the agent turns the
text into numbers, flags and objects, and names a parameter whose value is wrong). Passing the
values through the environment keeps them away from the shell, so a value never needs quoting.

A variable Greengrass left as its placeholder (the configuration has no such key) is left out,
so the parameter keeps its default. The file is replaced atomically and readable by its owner
only: ``EdgefleetConfig`` may hold the device's control-plane secret key.

Standard library only: it runs with the component's Python before anything else is imported.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Prefix of the environment variables the recipe's Run step sets, one per parameter.
PREFIX = "EDGEFLEET_GG_"

#: What Greengrass leaves in place of a configuration key that does not exist.
_PLACEHOLDER = re.compile(r"\{configuration:/[^}]*\}")


def collect(environ: Mapping[str, str]) -> dict[str, str]:
    """Parameter name -> value text, from the ``EDGEFLEET_GG_*`` variables of ``environ``
    (without those Greengrass did not replace)."""
    return {name.removeprefix(PREFIX): value for name, value in sorted(environ.items())
            if name.startswith(PREFIX) and not _PLACEHOLDER.fullmatch(value)}


def write(path: Path, parameters: Mapping[str, str]) -> None:
    """Replace ``path`` with ``parameters`` as a JSON object, mode 0600, atomically.

    Raises:
        OSError: the folder is missing or not writable.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(parameters, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: bad command line, 1: not written)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: greengrass_config.py OUTPUT.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    parameters = collect(os.environ if environ is None else environ)
    try:
        write(path, parameters)
    except OSError as error:
        print(f"greengrass_config.py: cannot write {path}: {error}", file=sys.stderr)
        return 1
    print(f"greengrass_config.py: wrote {len(parameters)} parameters to {path}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
