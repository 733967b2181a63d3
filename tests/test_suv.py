"""SUV body-weight factors: one synthetic series per rule, the expected factor by hand.

Every series has PatientWeight 75 kg, RadionuclideTotalDose 3.7e8 Bq and F-18's half-life
6586.2 s unless a test says otherwise; the injection is at 09:30:00.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pydicom
import pytest
from dicom_fixtures import file_hashes, pet_volume, philips_tags, write_pet_series

from napari_petite.io.dicom import read_series
from napari_petite.io.suv import parse_date, parse_datetime, parse_time, suv_factor

SPACING = (2.0, 1.5, 1.25)


def _read(tmp_path, **kwargs):
    folder = write_pet_series(tmp_path / "series", pet_volume(), spacing=SPACING, **kwargs)
    before = file_hashes(folder)
    volume = read_series(folder)
    assert file_hashes(folder) == before
    return volume


def _first_dataset(folder):
    return pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)


def test_start_decay_uses_series_time(tmp_path):
    # 09:30:00 injection, 10:00:00 series: 1800 s of decay
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1800.0 / 6586.2))
    vol = _read(tmp_path)
    assert vol.units == "Bq/mL"
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)
    assert vol.extra["suv_reason"] is None


def test_start_decay_uses_earliest_acquisition_when_series_time_is_later(tmp_path):
    # SeriesTime 10:10 was reset after the scan; the earliest slice was acquired at 10:00:00
    times = ["100030", "100000.000000", "100200", "100500", "100100", "100300"]
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1800.0 / 6586.2))
    vol = _read(tmp_path, series_time="101000", acquisition_times=times)
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)
    ds = _first_dataset(tmp_path / "series")
    factor, reason = suv_factor(ds, acquisition_times=times)
    assert reason is None and factor == pytest.approx(expected, rel=1e-12)


def test_admin_decay_has_no_decay_term(tmp_path):
    vol = _read(tmp_path, decay="ADMIN", series_time="110000")
    assert vol.extra["suv_factor"] == pytest.approx(75.0 * 1000.0 / 3.7e8, rel=1e-12)


def test_start_datetime_is_preferred_over_start_time(tmp_path):
    # RadiopharmaceuticalStartDateTime says 09:20:00: 2400 s, not the 1800 s StartTime gives
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-2400.0 / 6586.2))
    vol = _read(tmp_path, injection_datetime="20240102092000.00")
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)


def test_injection_before_midnight(tmp_path):
    # injected 23:50:00 on Jan 2, scanned 00:10:00 on Jan 3: 1200 s
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1200.0 / 6586.2))
    vol = _read(tmp_path, series_date="20240103", series_time="001000",
                injection_time="235000")
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("block", [0x10, 0x11])
def test_ge_private_scan_time_when_series_time_is_unusable(tmp_path, block):
    # SeriesTime 12:00 is after the acquisitions (10:05); GE's (0009,xx0D) says 10:00:00,
    # which wins over the acquisition time (2100 s would be wrong by 5 minutes)
    tags = {(0x0009, block): ("LO", "GEMS_PETD_01"),
            (0x0009, block << 8 | 0x0D): ("DT", "20240102100000.00")}
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1800.0 / 6586.2))
    vol = _read(tmp_path, series_time="120000", acquisition_times="100500",
                manufacturer="GE MEDICAL SYSTEMS", extra_tags=tags)
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)


def test_siemens_private_scan_time_when_series_time_is_missing(tmp_path):
    tags = {(0x0071, 0x0010): ("LO", "SIEMENS MED PT"),
            (0x0071, 0x1022): ("DT", "20240102100000.000000")}
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1800.0 / 6586.2))
    vol = _read(tmp_path, series_time=None, acquisition_times="100500", extra_tags=tags)
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)


def test_philips_counts_use_the_private_suv_factor(tmp_path):
    folder = tmp_path / "series"
    data = pet_volume()
    write_pet_series(folder, data, spacing=SPACING, units="CNTS", manufacturer="Philips",
                     extra_tags=philips_tags(2.5e-4, 4.2))
    vol = read_series(folder)
    # counts * 4.2 = Bq/mL; SUV = counts * 2.5e-4 = (Bq/mL) * 2.5e-4 / 4.2
    assert vol.units == "Bq/mL"
    assert vol.extra["suv_factor"] == pytest.approx(2.5e-4 / 4.2, rel=1e-9)
    np.testing.assert_allclose(vol.data.max(), data.max() * 4.2, rtol=1e-3)
    factor, reason = suv_factor(_first_dataset(folder))
    assert reason is None and factor == pytest.approx(2.5e-4, rel=1e-9)


def test_philips_counts_without_activity_factor_stay_counts(tmp_path):
    vol = _read(tmp_path, units="CNTS", manufacturer="Philips",
                extra_tags=philips_tags(2.5e-4, None))
    assert vol.units == "counts"
    assert vol.extra["suv_factor"] == pytest.approx(2.5e-4, rel=1e-9)


def test_philips_bqml_ignores_the_private_factors(tmp_path):
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1800.0 / 6586.2))
    vol = _read(tmp_path, units="BQML", manufacturer="Philips",
                extra_tags=philips_tags(2.5e-4, 4.2))
    assert vol.units == "Bq/mL"
    assert vol.extra["suv_factor"] == pytest.approx(expected, rel=1e-12)


def test_gml_is_already_suv(tmp_path):
    vol = _read(tmp_path, units="GML")
    assert vol.units == "SUV"
    assert vol.extra["suv_factor"] == 1.0
    # the factor back to Bq/mL (for DICOM export) still comes from the tags
    expected = 75.0 * 1000.0 / (3.7e8 * 2.0 ** (-1800.0 / 6586.2))
    assert vol.extra["dicom"]["bqml_suv_factor"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"weight": None}, "PatientWeight"),
    ({"weight": 0.0}, "PatientWeight"),
    ({"dose": None}, "dose"),
    ({"half_life": None}, "half-life"),
    ({"corrected": "ATTN"}, "DECY"),
    ({"corrected": "DECY"}, "ATTN"),
    ({"decay": "NONE"}, "DecayCorrection"),
    ({"injection_time": None}, "injection time"),
    ({"units": "PROPCPS"}, "PROPCPS"),
])
def test_no_suv_without_the_tags_it_needs(tmp_path, kwargs, words):
    vol = _read(tmp_path, **kwargs)  # still reads
    assert vol.data.shape == (6, 8, 10)
    assert vol.extra["suv_factor"] is None
    reason = vol.extra["suv_reason"]
    assert words in reason
    assert reason.endswith(".") and reason.count(". ") == 0 and "\n" not in reason


def test_time_parsing():
    assert parse_time("101500.000000") == dt.time(10, 15)
    assert parse_time("1015") == dt.time(10, 15)
    assert parse_time("10:15:30") == dt.time(10, 15, 30)
    assert parse_time("101500.5") == dt.time(10, 15, 0, 500000)
    assert parse_time("") is None and parse_time("ab") is None
    assert parse_date("20240102") == dt.date(2024, 1, 2)
    assert parse_date("2024.01.02") == dt.date(2024, 1, 2)
    assert parse_date("2024013") is None
    assert parse_datetime("20240102101500.00+0100") == dt.datetime(2024, 1, 2, 10, 15)
    assert parse_datetime(b"20240102101500 ") == dt.datetime(2024, 1, 2, 10, 15)
    assert parse_datetime("garbage") is None
