"""Body-weight SUV from the DICOM tags of a PET series.

A PET image in Bq/mL depends on how much tracer was injected and on the patient's size, so
values from two scanners (or two patients) are only comparable as SUV. The factor here turns
a voxel value in the series' units into SUVbw::

    SUVbw = value[Bq/mL] * PatientWeight[kg] * 1000 / (dose[Bq] * 2 ** (-dt / half_life[s]))

``dt`` is the time from injection to the time the images are decay-corrected to: the scan
reference time for ``DecayCorrection`` START, zero for ADMIN. Finding the scan reference time
is the fragile part (post-processing resets SeriesTime on some consoles), hence the order of
fallbacks in :func:`scan_reference_time`. Missing or inconsistent tags never raise: the
volume still reads, without SUV, and the reason says which tag is missing.

Everything is kept in seconds and naive ``datetime`` objects; time-zone offsets, when a
DT value carries one, are dropped, since all times of one series share the scanner's clock.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

# (group, private creator, element offset) of the vendors' scan date-time tags
GE_SCAN_DATETIME = (0x0009, "GEMS_PETD_01", 0x0D)  # (0009,100D) "post-injection" scan start
SIEMENS_SCAN_DATETIME = (0x0071, "SIEMENS MED PT", 0x22)  # (0071,1022)
PHILIPS_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_SCALE = (0x7053, PHILIPS_CREATOR, 0x00)  # (7053,1000) SUV per count
PHILIPS_ACTIVITY_SCALE = (0x7053, PHILIPS_CREATOR, 0x09)  # (7053,1009) Bq/mL per count


# -- value parsing ---------------------------------------------------------------------------
def as_text(value: Any) -> str:
    """A DICOM value as stripped text; private tags read as UN come back as bytes."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1", "replace")
    return str(value).strip().strip("\x00").strip()


def parse_date(value: Any) -> _dt.date | None:
    """DA ``20240102`` (or the old ``2024.01.02``) -> date; None when absent or malformed."""
    text = as_text(value).replace(".", "").replace("-", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return _dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _pydicom_value(kind, text: str):
    """pydicom's TM / DT parse of ``text``; None when it is malformed."""
    try:
        return kind(text)
    except (ValueError, TypeError, OverflowError):
        return None


def parse_time(value: Any) -> _dt.time | None:
    """TM ``101500.000000``, ``1015`` or the old ``10:15:00`` -> time; None when malformed."""
    from pydicom.valuerep import TM

    text = as_text(value).replace(":", "")
    parsed = _pydicom_value(TM, text) if text else None
    if parsed is None:
        return None
    return _dt.time(parsed.hour, parsed.minute, parsed.second, parsed.microsecond)


def parse_datetime(value: Any) -> _dt.datetime | None:
    """DT ``20240102101500.00[+0100]`` -> naive datetime; None when absent or malformed."""
    from pydicom.valuerep import DT

    text = as_text(value)
    # a year alone says nothing about the time of a scan
    parsed = _pydicom_value(DT, text) if len(text) >= 8 else None
    if parsed is None:
        return None
    return _dt.datetime(parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute,
                        parsed.second, parsed.microsecond)


def combine(date: Any, time: Any) -> _dt.datetime | None:
    """A DA and a TM value -> datetime, or None when either is missing or malformed."""
    day = date if isinstance(date, _dt.date) else parse_date(date)
    clock = time if isinstance(time, _dt.time) else parse_time(time)
    if day is None or clock is None:
        return None
    return _dt.datetime.combine(day, clock)


def as_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = as_text(value)
    from pydicom.multival import MultiValue

    if isinstance(value, list | tuple | MultiValue):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(str(value).strip().strip("\x00")) if isinstance(value, str) \
            else float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


# -- private tags ----------------------------------------------------------------------------
def private_value(ds, group: int, creator: str, offset: int) -> Any:
    """The value of a vendor's private element, found through its private creator.

    The creator reserves a block (``(gggg,00xx)``) that can differ between files, so the
    block is looked up by name; files whose creator is missing but that carry the usual
    literal tag ``(gggg,10oo)`` are read too.
    """
    want = creator.strip().lower()
    for block in range(0x10, 0x100):
        elem = ds.get((group << 16) | block)
        if elem is None:
            continue
        if as_text(elem.value).lower() == want:
            found = ds.get((group << 16) | (block << 8) | offset)
            return None if found is None else found.value
    found = ds.get((group << 16) | 0x1000 | offset)
    return None if found is None else found.value


def philips_factors(ds) -> tuple[float | None, float | None]:
    """Philips (7053,1000) SUV per count and (7053,1009) Bq/mL per count, when present."""
    return (as_float(private_value(ds, *PHILIPS_SUV_SCALE)),
            as_float(private_value(ds, *PHILIPS_ACTIVITY_SCALE)))


# -- times -----------------------------------------------------------------------------------
def _acquisition_datetimes(ds, acquisition_times: Iterable | None) -> list[_dt.datetime]:
    """Accept datetimes, (date, time) pairs or bare TM strings (dated by the series)."""
    default_date = ds.get("AcquisitionDate") or ds.get("SeriesDate") or ds.get("StudyDate")
    items = list(acquisition_times) if acquisition_times is not None else []
    if not items:
        own = parse_datetime(ds.get("AcquisitionDateTime"))
        if own is not None:
            return [own]
        items = [(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))]
    out = []
    for item in items:
        if isinstance(item, _dt.datetime):
            out.append(item)
            continue
        if isinstance(item, tuple | list) and len(item) == 2:
            date, time = item
        else:
            date, time = None, item
        when = combine(date or default_date, time)
        if when is not None:
            out.append(when)
    return out


def scan_reference_time(ds, acquisition_times: Iterable | None = None) -> _dt.datetime | None:
    """The time the series' images are decay-corrected to (for ``DecayCorrection`` START).

    SeriesDate/SeriesTime, unless it is later than the earliest acquisition: consoles reset
    it when a series is post-processed, and then it is no longer the scan start. In that case
    (or when it is missing) the vendors' private scan date-time is used (GE (0009,100D), then
    Siemens (0071,1022)), and the earliest acquisition time last.
    """
    series = combine(ds.get("SeriesDate"), ds.get("SeriesTime"))
    acquired = _acquisition_datetimes(ds, acquisition_times)
    earliest = min(acquired) if acquired else None
    if series is not None and (earliest is None or series <= earliest):
        return series
    for group, creator, offset in (GE_SCAN_DATETIME, SIEMENS_SCAN_DATETIME):
        vendor = parse_datetime(private_value(ds, group, creator, offset))
        if vendor is not None:
            return vendor
    return earliest


def injection_time(ds, reference: _dt.datetime | None) -> _dt.datetime | None:
    """Start of the injection: RadiopharmaceuticalStartDateTime, else the series date with
    RadiopharmaceuticalStartTime (a day earlier when that would fall after the scan, for
    injections before midnight)."""
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        return None
    item = seq[0]
    full = parse_datetime(item.get("RadiopharmaceuticalStartDateTime"))
    if full is not None:
        return full
    clock = parse_time(item.get("RadiopharmaceuticalStartTime"))
    if clock is None:
        return None
    day = parse_date(ds.get("SeriesDate")) or parse_date(ds.get("StudyDate"))
    if day is None and reference is not None:
        day = reference.date()
    if day is None:
        return None
    when = _dt.datetime.combine(day, clock)
    if reference is not None and when > reference >= when - _dt.timedelta(days=1):
        when -= _dt.timedelta(days=1)
    return when


# -- the factor ------------------------------------------------------------------------------
def _corrections(ds) -> tuple[set[str] | None, str]:
    """The corrections applied (from CorrectedImage, or the Enhanced PET YES/NO flags)."""
    corrected = ds.get("CorrectedImage")
    if corrected is not None:
        values = [corrected] if isinstance(corrected, str | bytes) else list(corrected)
        return {as_text(v).upper() for v in values}, "CorrectedImage (0028,0051)"
    flags = {"ATTN": ds.get("AttenuationCorrected"), "DECY": ds.get("DecayCorrected")}
    if all(v is not None for v in flags.values()):
        return {k for k, v in flags.items() if as_text(v).upper() == "YES"}, \
            "AttenuationCorrected/DecayCorrected"
    return None, "CorrectedImage (0028,0051)"


def bqml_suv_factor(ds, *, acquisition_times: Iterable | None = None
                    ) -> tuple[float | None, str | None]:
    """SUVbw per Bq/mL from weight, dose, half-life and times (the formula of the module).

    Also used for series stored in SUV (GML), to convert them back to Bq/mL on export.
    """
    corrections, source = _corrections(ds)
    if corrections is None:
        return None, ("CorrectedImage (0028,0051) is missing, so it is unknown whether the "
                      "images are attenuation- and decay-corrected and SUV is not computed.")
    missing = [name for name, label in (("ATTN", "attenuation"), ("DECY", "decay"))
               if name not in corrections]
    if missing:
        what = " and ".join(missing)
        return None, (f"{source} lacks {what}, so the images are not fully corrected "
                      "(attenuation and decay) and SUV would be wrong.")
    decay = as_text(ds.get("DecayCorrection")).upper()
    if not decay and ds.get("DecayCorrectionDateTime") is not None:
        decay = "DATETIME"
    if decay not in ("START", "ADMIN", "DATETIME"):
        shown = decay or "missing"
        return None, (f"DecayCorrection (0054,1102) is {shown}, not START or ADMIN, so the "
                      "time the images are decay-corrected to is unknown and SUV is not "
                      "computed.")
    weight = as_float(ds.get("PatientWeight"))
    if weight is None:
        return None, "PatientWeight (0010,1030) is missing, so SUV cannot be computed."
    if weight <= 0:
        return None, (f"PatientWeight (0010,1030) is {weight:g} kg, so SUV cannot be "
                      "computed.")
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        return None, ("RadiopharmaceuticalInformationSequence (0054,0016) is missing, so the "
                      "injected dose is unknown and SUV cannot be computed.")
    item = seq[0]
    dose = as_float(item.get("RadionuclideTotalDose"))
    if dose is None or dose <= 0:
        return None, ("The injected dose (RadionuclideTotalDose, 0018,1074) is missing or "
                      "zero, so SUV cannot be computed.")
    if decay == "ADMIN":  # already decay-corrected to the administration: no decay left
        return weight * 1000.0 / dose, None
    half_life = as_float(item.get("RadionuclideHalfLife"))
    if half_life is None or half_life <= 0:
        return None, ("The radionuclide half-life (RadionuclideHalfLife, 0018,1075) is missing "
                      "or zero, so the dose cannot be decay-corrected and SUV is not "
                      "computed.")
    if decay == "DATETIME":
        reference = parse_datetime(ds.get("DecayCorrectionDateTime"))
    else:
        reference = scan_reference_time(ds, acquisition_times)
    if reference is None:
        return None, ("The scan time (SeriesDate/SeriesTime, AcquisitionTime) is missing, so "
                      "the decay since injection is unknown and SUV is not computed.")
    injected = injection_time(ds, reference)
    if injected is None:
        return None, ("The injection time (RadiopharmaceuticalStartDateTime or "
                      "RadiopharmaceuticalStartTime) is missing, so SUV cannot be computed.")
    delta = (reference - injected).total_seconds()
    if delta < 0:
        return None, (f"The injection ({injected:%Y-%m-%d %H:%M:%S}) is after the scan "
                      f"reference time ({reference:%Y-%m-%d %H:%M:%S}), so the times are "
                      "inconsistent and SUV is not computed.")
    return weight * 1000.0 / (dose * 2.0 ** (-delta / half_life)), None


def suv_factor(ds, *, acquisition_times: Iterable | None = None, units: str | None = None
               ) -> tuple[float | None, str | None]:
    """``(factor, None)`` turning a value in the series' units into SUVbw, else
    ``(None, reason)``.

    ``ds`` is one dataset of the series (its first slice); ``acquisition_times`` are the
    series' AcquisitionTime values (TM strings, ``(date, time)`` pairs or datetimes), whose
    earliest one checks SeriesTime. ``units`` overrides ``ds.Units`` (Enhanced PET keeps it
    in RescaleType). Units BQML use the formula; GML are SUV already (1.0); Philips CNTS use
    the scanner's own SUV scale factor (7053,1000), per count. A Philips series in BQML uses
    the formula: its 7053 factors refer to counts it does not store.
    """
    code = as_text(units if units is not None else ds.get("Units")).upper()
    if code == "GML":
        return 1.0, None
    if code == "CNTS":
        scale, _ = philips_factors(ds)
        if scale is None or scale <= 0:
            return None, ("The series is in counts (Units CNTS) without a usable Philips SUV "
                          "scale factor (7053,1000), so SUV cannot be computed.")
        return scale, None
    if code != "BQML":
        shown = code or "missing"
        return None, (f"Units (0054,1001) is {shown}, not BQML, GML or Philips CNTS, so SUV "
                      "cannot be computed.")
    return bqml_suv_factor(ds, acquisition_times=acquisition_times)


def suv_tags(ds) -> dict[str, Any]:
    """The SUV-relevant tags of ``ds`` as text (JSON-able), for provenance and export."""
    out: dict[str, Any] = {}
    for key in ("Units", "DecayCorrection", "DecayCorrectionDateTime", "PatientWeight",
                "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
                "AcquisitionDateTime", "Manufacturer"):
        if ds.get(key) is not None:
            out[key] = as_text(ds.get(key))
    corrected = ds.get("CorrectedImage")
    if corrected is not None:
        values = [corrected] if isinstance(corrected, str | bytes) else list(corrected)
        out["CorrectedImage"] = [as_text(v) for v in values]
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if seq:
        item = seq[0]
        for key in ("Radiopharmaceutical", "RadiopharmaceuticalStartTime",
                    "RadiopharmaceuticalStartDateTime", "RadionuclideTotalDose",
                    "RadionuclideHalfLife", "RadionuclidePositronFraction"):
            if item.get(key) is not None:
                out[key] = as_text(item.get(key))
    for name, (group, creator, offset) in (("GEScanDateTime", GE_SCAN_DATETIME),
                                           ("SiemensScanDateTime", SIEMENS_SCAN_DATETIME),
                                           ("PhilipsSUVScale", PHILIPS_SUV_SCALE),
                                           ("PhilipsActivityScale", PHILIPS_ACTIVITY_SCALE)):
        value = private_value(ds, group, creator, offset)
        if value is not None:
            out[name] = as_text(value)
    return out
