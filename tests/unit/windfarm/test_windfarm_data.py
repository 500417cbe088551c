"""Cache location, loading and cleaning, and windowing, on a tiny archive of the same format."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from windfarm import data

HEADER = "Wind_turbine_name,Date_time,Ba_avg,P_avg,Ws_avg,Va_avg,Ot_avg,Ya_avg,Wa_avg\n"


def scada_zip(path: Path, rows: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(data.CSV_IN_ZIP, HEADER + "".join(row + "\n" for row in rows))
    return path


def row(turbine: str, time: str, power: float = 500.0, temperature: float = 10.0) -> str:
    return f"{turbine},{time},-1.0,{power},7.0,0.5,{temperature},180,181"


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "mine"))
    assert data.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(data.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "edgefleet" / "windfarm"


def test_a_corrupt_cached_zip_is_refused_with_advice(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    (tmp_path / data.ZIP_NAME).write_bytes(b"not the archive")
    with pytest.raises(data.DataUnavailableError, match="delete it and run again"):
        data.ensure_data()


def test_load_fills_the_grid_and_blanks_sensor_faults(tmp_path: Path) -> None:
    archive = scada_zip(tmp_path / "lhb.zip", [
        row("T1", "2014-12-31T23:40:00+00:00"),
        row("T1", "2015-01-01T01:00:00+01:00", temperature=-273.2),  # same instant as 00:00Z
        row("T2", "2014-12-31T23:40:00+00:00", power=2300.5),
        row("T2", "2014-12-31T23:50:00+00:00"),
        row("T2", "2015-01-01T00:00:00+00:00"),
        row("T2", "2015-01-01T00:00:00+00:00", power=1.0),  # duplicate: first kept
    ])
    frame = data.load_scada(archive)
    assert list(frame.columns) == ["turbine", "time", *data.FEATURES]
    assert len(frame) == 6  # 2 turbines x 3 steps
    t1 = frame[frame["turbine"] == "T1"].reset_index(drop=True)
    assert t1["P_avg"].isna().tolist() == [False, True, False]  # 23:50 missing
    assert np.isnan(t1.loc[2, "Ot_avg"])
    t2 = frame[frame["turbine"] == "T2"].reset_index(drop=True)
    assert np.isnan(t2.loc[0, "P_avg"]) and t2.loc[2, "P_avg"] == 500.0
    train, test = data.split_years(frame)
    assert (len(train), len(test)) == (4, 2)


def test_load_refuses_another_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("something.csv", "a,b\n")
    with pytest.raises(data.DataUnavailableError, match="not the La Haute Borne archive"):
        data.load_scada(tmp_path / "other.zip")


def grid(values: np.ndarray, turbine: str = "T1") -> pd.DataFrame:
    times = pd.date_range("2015-01-01", periods=len(values), freq="10min", tz="UTC")
    frame = pd.DataFrame(values, columns=list(data.FEATURES))
    frame.insert(0, "time", times)
    frame.insert(0, "turbine", turbine)
    return frame


def test_windows_are_record_major_and_skip_gaps() -> None:
    values = np.arange(13 * 4, dtype=float).reshape(13, 4)
    values[7, 2] = np.nan  # second window incomplete; the 13th record is a partial window
    windows = data.make_windows(grid(values), length=6)
    assert windows.x.shape == (1, 24)
    assert windows.x.dtype == np.float32
    np.testing.assert_array_equal(windows.x[0], np.arange(24))
    assert windows.start[0] == np.datetime64("2015-01-01T00:00")
    assert windows.duration == pd.Timedelta(hours=1)
    assert windows.select(np.array([False])).x.shape == (0, 24)
