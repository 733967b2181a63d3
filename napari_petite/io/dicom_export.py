"""A denoised volume as a new DICOM PET series of the same patient and study, for PACS.

A result only reaches the radiologist's viewer as DICOM that the PACS files next to the
original: same patient, same study, same frame of reference (so it fuses with the CT), a new
series marked DERIVED. The source series is re-read for those tags, so nothing about the
patient has to travel through the napari session.

The series is a conformant PET Image IOD (DICOM PS3.3 A.21; checked with dicom3tools'
``dciodvfy`` and ``dcentvfy`` in ``tests/test_dicom_conformance.py``): ImageType
values DERIVED, PRIMARY (value 2 of a PET image may only be PRIMARY), the derivation in
DerivationDescription and DerivationCodeSequence, each slice's SourceImageSequence naming
the source instance at its position, the PET Series, PET Isotope and patient orientation
modules carried from the source, and each slice's timing and correction factors
(AcquisitionDate/Time, FrameReferenceTime, ActualFrameDuration, DecayFactor, ...) carried
from the source slice at that position, since decay-correction and SUV tools read them per
image.

Pixel values are written as 16-bit unsigned integers with a RescaleSlope chosen per slice so
that each slice uses the whole range: the error is at most half a step, 1/131070 of the
slice's maximum. Negative values (noise around zero after denoising) are clipped to 0, which
an unsigned PET series cannot hold and which no activity concentration can be. The series is
in Bq/mL (Units BQML) and keeps the source's SUV tags (dose, weight, times, corrections), so
viewers compute the same SUV as on the source.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_petite.errors import ConfigError, InputError, OutputError
from napari_petite.io.atomic import atomic_dir
from napari_petite.io.dicom import PET_IMAGE_STORAGE
from napari_petite.io.nifti import Volume
from napari_petite.io.suv import (
    GE_SCAN_DATETIME,
    SIEMENS_SCAN_DATETIME,
    as_float,
    as_text,
    parse_datetime,
    private_value,
)

#: tags copied from the source's first file when present: patient, study, general series,
#: frame of reference, equipment, and everything SUV needs
COPIED = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID",
    "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
    "EthnicGroup", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "Manufacturer", "InstitutionName", "StationName",
    "ManufacturerModelName", "DeviceSerialNumber", "BodyPartExamined", "PatientPosition",
    "Laterality", "PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence",
    # PET Series module (PS3.3 C.8.9.1), whole; Units, NumberOfSlices are the export's own
    "SeriesDate", "SeriesTime", "SUVType", "CountsSource", "SeriesType", "ReprojectionMethod",
    "NumberOfRRIntervals", "NumberOfTimeSlots", "NumberOfTimeSlices", "CorrectedImage",
    "RandomsCorrectionMethod", "AttenuationCorrectionMethod", "ScatterCorrectionMethod",
    "DecayCorrection", "DecayCorrectionDateTime", "ReconstructionDiameter", "ConvolutionKernel",
    "ReconstructionMethod", "DetectorLinesOfResponseUsed", "AcquisitionStartCondition",
    "AcquisitionStartConditionData", "AcquisitionTerminationCondition",
    "AcquisitionTerminationConditionData", "FieldOfViewShape", "FieldOfViewDimensions",
    "GantryDetectorTilt", "GantryDetectorSlew", "TypeOfDetectorMotion", "CollimatorType",
    "CollimatorGridName", "AxialAcceptance", "AxialMash", "TransverseMash",
    "DetectorElementSize", "CoincidenceWindowWidth", "EnergyWindowRangeSequence",
    "SecondaryCountsType", "DecayCorrected", "AttenuationCorrected",
    # PET Isotope module (C.8.9.2)
    "RadiopharmaceuticalInformationSequence", "InterventionDrugInformationSequence",
)
#: Type 2 attributes (present, possibly empty) of the modules above: written empty when the
#: source lacks them, so the export is conformant wherever the source nearly is
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
         "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer",
         "PositionReferenceIndicator", "CorrectedImage", "CollimatorType",
         "RadiopharmaceuticalInformationSequence", "PatientOrientationCodeSequence",
         "PatientGantryRelationshipCodeSequence")
#: PET Image module attributes that belong to each image: carried from the source slice at
#: the same position (a frame of a multi-frame source: from its functional groups)
PER_IMAGE = ("AcquisitionDate", "AcquisitionTime", "FrameReferenceTime",
             "ActualFrameDuration", "DecayFactor", "DoseCalibrationFactor",
             "ScatterFractionFactor", "DeadTimeFactor", "SliceSensitivityFactor",
             "PrimaryPromptsCountsAccumulated", "SecondaryCountsAccumulated")
#: the per-frame correction factors of an Enhanced PET source (PET Frame Correction Factors)
FRAME_FACTORS = ("DecayFactor", "DoseCalibrationFactor", "ScatterFractionFactor",
                 "DeadTimeFactor", "SliceSensitivityFactor", "PrimaryPromptsCountsAccumulated")
#: DICOM CID 7203 (Image Derivation): denoising is a smoothing of the image
DERIVATION_CODE = ("113087", "DCM", "Smoothing")
#: CID 7202: why each slice names its source instance
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
#: CID 7005: what napari-petite was for this instance (Contributing Equipment)
PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")
MAX_STORED = 65535


def _ds(value: float) -> str:
    """A float as a DICOM DS string (16 characters at most)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _source_info(like: Volume) -> dict[str, Any]:
    info = like.extra.get("dicom") if like.extra.get("format") == "dicom" else None
    if not isinstance(info, dict) or not info.get("files") or not info.get("slices"):
        raise InputError("DICOM export needs a DICOM source series for patient and study; "
                         "export NIfTI instead.")
    return info


def _read_sources(info: dict[str, Any]) -> list:
    """Headers of every source file (patient and study from the first, each slice's timing
    from its own), each checked to still belong to the series the volume was read from."""
    from pydicom import dcmread

    headers = []
    for name in info["files"]:
        path = Path(name)
        try:
            src = dcmread(path, stop_before_pixels=True)
        except Exception as err:  # missing, moved or damaged since it was read
            reason = " ".join(str(err).split()).rstrip(".") or type(err).__name__
            raise InputError(f"The source series file {path} cannot be read any more "
                             f"({reason}); DICOM export copies patient, study and slice timing "
                             "from it, so keep the source series where it was read.") from None
        if as_text(src.get("SeriesInstanceUID")) != info.get("SeriesInstanceUID"):
            raise InputError(f"{path} no longer belongs to the series the volume was read "
                             "from; read the source series again before exporting.")
        headers.append(src)
    return headers


def _check_folder(dest: Path, like: Volume, info: dict[str, Any], allow_inside: bool) -> None:
    target = dest.resolve()
    sources = [Path(f).resolve() for f in info["files"]]
    for src in sources:
        if src == target or target in src.parents:
            raise OutputError(f"Refusing to write {dest}: it holds the source series ({src}), "
                              "which must stay untouched; choose another folder.")
    folders = {src.parent for src in sources}
    if like.path is not None:
        given = Path(like.path).resolve()  # the folder read, or the multi-frame file
        folders.add(given.parent if given in sources else given)
    for folder in sorted(folders):
        if not allow_inside and target.is_relative_to(folder):
            raise OutputError(f"Refusing to write {dest} inside the source series folder "
                              f"{folder}: readers would then find two series there; choose a "
                              "folder outside it.")


def _bqml(data: np.ndarray, like: Volume, info: dict[str, Any]) -> np.ndarray:
    if like.units == "Bq/mL":
        return data
    if like.units == "SUV":
        factor = info.get("bqml_suv_factor")
        if not factor:
            raise InputError("The source series is in SUV and its tags (weight, dose, times) "
                             "do not allow converting back to Bq/mL for a BQML series; export "
                             "NIfTI instead.")
        return data / float(factor)
    raise InputError(f"The volume is in {like.units or 'unknown units'}, not Bq/mL or SUV, so "
                     "it cannot be written as a BQML PET series; export NIfTI instead.")


def _encode(plane: np.ndarray) -> tuple[np.ndarray, str]:
    """uint16 pixels and the DS slope that maps them back to ``plane`` (clipped at 0)."""
    plane = np.clip(plane, 0.0, None)
    peak = float(plane.max())
    slope = _ds(peak / MAX_STORED) if peak > 0 else "1"
    stored = np.clip(np.rint(plane / float(slope)), 0, MAX_STORED).astype("<u2")
    return stored, slope


def _code(value: str, scheme: str, meaning: str):
    """One code sequence item."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _frame_timing(src, index: int, series_ref: _dt.datetime | None):
    """PER_IMAGE values of frame ``index`` of an Enhanced PET file, from its functional
    groups (Frame Content; PET Frame Correction Factors)."""
    from pydicom.dataset import Dataset

    from napari_petite.io.dicom import _group_value

    group = src.PerFrameFunctionalGroupsSequence[index]
    shared_seq = src.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None

    def value(sequence: str, keyword: str):
        return _group_value(group, shared, sequence, keyword)

    out = Dataset()
    acquired = parse_datetime(value("FrameContentSequence", "FrameAcquisitionDateTime"))
    duration = as_float(value("FrameContentSequence", "FrameAcquisitionDuration"))
    if acquired is not None:
        out.AcquisitionDate, out.AcquisitionTime = f"{acquired:%Y%m%d}", f"{acquired:%H%M%S.%f}"
    if duration is not None:
        out.ActualFrameDuration = round(duration)
    reference = parse_datetime(value("FrameContentSequence", "FrameReferenceDateTime"))
    if reference is None and acquired is not None and duration is not None:
        reference = acquired + _dt.timedelta(milliseconds=duration / 2)
    if reference is not None and series_ref is not None:
        out.FrameReferenceTime = _ds((reference - series_ref).total_seconds() * 1000.0)
    for keyword in FRAME_FACTORS:
        found = value("PETFrameCorrectionFactorsSequence", keyword)
        if found is not None:
            setattr(out, keyword, found)
    return out


def _slice_timing(sources: list, info: dict[str, Any]) -> list:
    """For each output slice, the PER_IMAGE elements of the source slice at its position."""
    from pydicom.dataset import Dataset

    from napari_petite.io.suv import combine

    first = sources[info["slices"][0]["file"]]
    series_ref = combine(first.get("SeriesDate"), first.get("SeriesTime"))
    out = []
    for item in info["slices"]:
        src = sources[item["file"]]
        if item.get("frame") is not None:
            out.append(_frame_timing(src, int(item["frame"]), series_ref))
            continue
        values = Dataset()
        for keyword in PER_IMAGE:
            if keyword in src:
                values.add(copy.deepcopy(src[keyword]))
        out.append(values)
    return out


def _base(src, info: dict[str, Any], description: str, n: int):
    """The tags every slice of the new series shares."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    import napari_petite

    ds = Dataset()
    for keyword in COPIED:
        if keyword in src:
            ds.add(copy.deepcopy(src[keyword]))
    for keyword in TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, [] if keyword.endswith("Sequence") else "")
    for group, creator, offset in (GE_SCAN_DATETIME, SIEMENS_SCAN_DATETIME):
        value = as_text(private_value(src, group, creator, offset))
        if value and parse_datetime(value) is not None:
            ds.private_block(group, creator, create=True).add_new(offset, "DT", value)
    if not description.isascii() and "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    now = _dt.datetime.now()
    ds.SOPClassUID = PET_IMAGE_STORAGE
    ds.Modality = "PT"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(float(info.get("SeriesNumber") or 0)) + 1000
    ds.SeriesDescription = description
    ds.DerivationDescription = (f"{description}: denoised by a neural network "
                                f"(napari-petite) from series "
                                f"{info.get('SeriesInstanceUID')}")[:1024]
    ds.DerivationCodeSequence = Sequence([_code(*DERIVATION_CODE)])
    version = f"napari-petite {napari_petite.__version__}"
    ds.SoftwareVersions = version
    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = Sequence([_code(*PROCESSING_EQUIPMENT)])
    equipment.Manufacturer = "napari-petite"
    equipment.SoftwareVersions = version
    equipment.ContributionDateTime = f"{now:%Y%m%d%H%M%S}"
    equipment.ContributionDescription = "PET denoising (Mix-PEFT adapted network)"
    ds.ContributingEquipmentSequence = Sequence([equipment])
    ds.InstanceCreationDate = ds.ContentDate = f"{now:%Y%m%d}"
    ds.InstanceCreationTime = ds.ContentTime = f"{now:%H%M%S}"
    ds.Units = "BQML"
    ds.NumberOfSlices = n
    ds.ImageOrientationPatient = [_ds(v) for v in info["orientation"]]
    ds.PixelSpacing = [_ds(v) for v in info["pixel_spacing"]]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept = "0"
    return ds


def write_derived_series(
    data_zyx: np.ndarray,
    like: Volume,
    folder: str | os.PathLike,
    *,
    description: str,
    overwrite: bool = False,
    allow_inside_source: bool = False,
) -> Path:
    """Write ``data_zyx`` (same grid and units as ``like``) as a new PET series in ``folder``.

    ``like`` is the volume :func:`~napari_petite.io.dicom.read_series` returned for the
    source; its ``extra["dicom"]`` names the source files, which are re-read: the first for
    the patient, study and PET series tags, each slice's own for its timing. ``description``
    becomes SeriesDescription (name the adapter, so a reader of the PACS knows what made the
    series). The folder is written whole or not at all
    (:func:`~napari_petite.io.atomic.atomic_dir`); it may not hold the source, nor lie inside
    the source series folder unless ``allow_inside_source``.

    Raises
    ------
    InputError
        ``like`` is not from DICOM, the data do not match its grid, hold NaN/Inf, or cannot
        be expressed in Bq/mL.
    OutputError
        the folder exists (without ``overwrite``), holds or lies inside the source.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    info = _source_info(like)
    description = " ".join(str(description).split()).replace("\\", "/")[:64]
    if not description:
        raise ConfigError("A derived series needs a description (for example the adapter's "
                          "name), so the PACS shows what made it.")
    data = np.asarray(data_zyx)
    slices = info["slices"]
    if data.ndim != 3 or data.shape != tuple(like.shape) or data.shape[0] != len(slices):
        raise InputError(f"The data to export have shape {data.shape}, but the source series "
                         f"has {tuple(like.shape)} voxels; export a volume on the source grid.")
    if data.dtype.kind not in "biuf" or not np.all(np.isfinite(data)):
        raise InputError("The data to export hold NaN, infinite or non-numeric values; replace "
                         "them (e.g. with 0) before exporting to DICOM.")
    values = _bqml(data.astype(np.float64), like, info)
    dest = Path(folder).expanduser()
    _check_folder(dest, like, info, allow_inside_source)
    sources = _read_sources(info)
    src = sources[slices[0]["file"]]
    n, rows, cols = data.shape
    base = _base(src, info, description, n)
    timing = _slice_timing(sources, info)
    source_class = as_text(info.get("SOPClassUID")) or as_text(src.get("SOPClassUID"))
    with atomic_dir(dest, overwrite=overwrite, kind="DICOM series", mark=False) as tmp:
        for k in range(n):
            stored, slope = _encode(values[k])
            ds = copy.deepcopy(base)
            ds.update(timing[k])
            if "ActualFrameDuration" not in ds:  # Type 2: present even when unknown
                ds.ActualFrameDuration = None
            sop_uid = generate_uid()
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = ds.ImageIndex = k + 1
            ds.ImagePositionPatient = [_ds(v) for v in slices[k]["position"]]
            thickness = slices[k].get("thickness") or like.spacing[0]
            ds.SliceThickness = _ds(thickness)
            ds.Rows, ds.Columns = rows, cols
            ds.RescaleSlope = slope
            ds.PixelData = stored.tobytes()
            ref_uid = slices[k].get("sop_instance_uid")
            if ref_uid and source_class:
                item = Dataset()
                item.ReferencedSOPClassUID = source_class
                item.ReferencedSOPInstanceUID = ref_uid
                if slices[k].get("frame") is not None:
                    item.ReferencedFrameNumber = int(slices[k]["frame"]) + 1
                item.PurposeOfReferenceCodeSequence = Sequence([_code(*SOURCE_PURPOSE)])
                ds.SourceImageSequence = Sequence([item])
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.save_as(tmp / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return dest
