"""A PACS as a source of scans and a destination of results: DICOM networking (pynetdicom).

Clinicians get scans from, and send results to, a PACS, not a folder. This module is the
service-class user of the four DICOM services that needs: C-ECHO (is the PACS there and does
it accept us), C-FIND (patients, studies, series), C-GET (retrieve a series over the same
association: unlike C-MOVE, the PACS needs no entry for us) and C-STORE (send a derived
series). No Qt here: the docks call it from workers, the CLI (``petite pacs``) directly.

Where the PACS is comes from settings, never from the code: a small JSON file (``host``,
``port``, ``called_aet``, ``calling_aet``, ``timeout_s``; :func:`settings_path` says where it
is looked for) and options that override it. What a user can get wrong (a bad address, a
refused connection or association, a timeout, a failed query or transfer) is a
:class:`~napari_petite.errors.NetworkError` with one sentence.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from napari_petite.errors import ConfigError, NetworkError

#: environment variable naming the settings file
SETTINGS_ENV = "PETITE_PACS_CONFIG"
#: query levels and the attributes each returns
RETURN_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime",
              "StudyDescription", "AccessionNumber", "ModalitiesInStudy"),
    "SERIES": ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate",
               "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"),
}
#: the image storage classes a retrieved PET study may bring (PET, Enhanced PET, CT, MR)
GET_STORAGE = ("1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130",
               "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4")


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS is and who we are to it."""

    host: str
    port: int
    called_aet: str
    calling_aet: str = "PETITE"
    timeout_s: float = 30.0

    def describe(self) -> str:
        return f"{self.called_aet} at {self.host}:{self.port}"


def settings_path() -> Path:
    """The settings file: ``$PETITE_PACS_CONFIG``, else ``~/.config/napari-petite/pacs.json``."""
    env = os.environ.get(SETTINGS_ENV)
    return Path(env).expanduser() if env else \
        Path("~/.config/napari-petite/pacs.json").expanduser()


def _ae_title(value: Any, what: str) -> str:
    text = str(value).strip()
    if not text or len(text) > 16 or not text.isascii() or "\\" in text:
        raise ConfigError(f"The {what} AE title {value!r} is not valid: 1 to 16 ASCII "
                          "characters without a backslash.")
    return text


def load_settings(path: str | os.PathLike | None = None, **overrides: Any) -> PacsSettings:
    """Settings from the JSON file (``path`` or :func:`settings_path`, when it exists) with
    ``overrides`` (None values ignored) on top; every missing or invalid one is a sentence."""
    file = Path(path).expanduser() if path else settings_path()
    values: dict[str, Any] = {}
    if path or file.is_file():
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"The PACS settings file {file} does not exist; write one or "
                              "give --host, --port and --called-aet.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"The PACS settings file {file} is not valid JSON ({err}); "
                              "fix it.") from None
        if not isinstance(values, dict):
            raise ConfigError(f"The PACS settings file {file} must hold a JSON object.")
    known = {f.name for f in fields(PacsSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"The PACS settings file {file} has unknown keys "
                          f"{', '.join(unknown)}; use {', '.join(sorted(known))}.")
    values.update({k: v for k, v in overrides.items() if v is not None})
    missing = [k for k in ("host", "port", "called_aet") if not values.get(k)]
    if missing:
        raise ConfigError(f"The PACS {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                          f"not set; give {', '.join('--' + m.replace('_', '-') for m in missing)}"
                          f" or write them into {file}.")
    try:
        port, timeout = int(values["port"]), float(values.get("timeout_s", 30.0))
    except (TypeError, ValueError):
        raise ConfigError("The PACS port must be a whole number and timeout_s a number of "
                          "seconds.") from None
    if not 0 < port < 65536 or not timeout > 0:
        raise ConfigError(f"The PACS port must lie in 1-65535 (got {port}) and the timeout be "
                          f"positive (got {timeout}).")
    return PacsSettings(host=str(values["host"]).strip(), port=port,
                        called_aet=_ae_title(values["called_aet"], "called"),
                        calling_aet=_ae_title(values.get("calling_aet", "PETITE"), "calling"),
                        timeout_s=timeout)


def save_settings(settings: PacsSettings, path: str | os.PathLike | None = None) -> Path:
    """Write the settings file (atomically), so the docks remember the PACS."""
    from napari_petite.io.atomic import write_text

    return write_text(Path(path).expanduser() if path else settings_path(),
                      json.dumps(asdict(settings), indent=2) + "\n", overwrite=True)


# -- associations ----------------------------------------------------------------------------
def _reach(settings: PacsSettings) -> None:
    """Open and close a TCP connection first, so each network failure gets its sentence."""
    where = settings.describe()
    try:
        with socket.create_connection((settings.host, settings.port),
                                      timeout=settings.timeout_s):
            pass
    except socket.gaierror:
        raise NetworkError(f"The PACS address {settings.host!r} cannot be resolved; check the "
                           "host name in the PACS settings.") from None
    except ConnectionRefusedError:
        raise NetworkError(f"Nothing accepts connections on {settings.host}:{settings.port}; "
                           "check the port, or that the PACS is running.") from None
    except TimeoutError:
        raise NetworkError(f"{where} did not answer within {settings.timeout_s:g} s; check the "
                           "address and the network, or raise the timeout.") from None
    except OSError as err:
        raise NetworkError(f"{where} cannot be reached ({err.strerror or err}); check the "
                           "address and the network.") from None


def _associate(settings: PacsSettings, ae, **kwargs):
    """An established association, or a NetworkError saying why not."""
    _reach(settings)
    for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, attr, settings.timeout_s)
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.called_aet, **kwargs)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise NetworkError(f"{settings.describe()} refused the association of "
                           f"{settings.calling_aet}; ask its administrator to accept that "
                           "calling AE title, or check the called AE title.")
    raise NetworkError(f"{settings.describe()} did not complete the association (aborted or no "
                       f"answer within {settings.timeout_s:g} s); check the PACS settings.")


def _new_ae(settings: PacsSettings):
    from pynetdicom import AE

    return AE(ae_title=settings.calling_aet)


def _status_ok(status, what: str, settings: PacsSettings) -> None:
    if not status:  # an empty status: the association ended or timed out
        raise NetworkError(f"{settings.describe()} gave no answer to the {what} within "
                           f"{settings.timeout_s:g} s; try again or raise the timeout.")
    code = int(status.Status)
    if code not in (0x0000, 0xFF00, 0xFF01):
        comment = str(status.get("ErrorComment", "")).strip()
        raise NetworkError(f"{settings.describe()} answered the {what} with status "
                           f"0x{code:04X}{': ' + comment if comment else ''}; check the request "
                           "or ask the PACS administrator.")


# -- the four services -----------------------------------------------------------------------
def echo(settings: PacsSettings) -> None:
    """C-ECHO: the PACS is reachable and accepts our association."""
    from pynetdicom.sop_class import Verification

    ae = _new_ae(settings)
    ae.add_requested_context(Verification)
    assoc = _associate(settings, ae)
    try:
        _status_ok(assoc.send_c_echo(), "echo", settings)
    finally:
        assoc.release()


def find(settings: PacsSettings, level: str, **query: str) -> list[dict[str, str]]:
    """C-FIND at ``level`` (patient, study or series) with ``query`` keyword values (DICOM
    wildcards allowed); one dict of text values per match, in the order the PACS answered."""
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    level = level.upper()
    if level not in RETURN_KEYS:
        raise ConfigError(f"A PACS search is by patient, study or series, not {level.lower()}.")
    model = PatientRootQueryRetrieveInformationModelFind if level == "PATIENT" \
        else StudyRootQueryRetrieveInformationModelFind
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for key in RETURN_KEYS[level]:
        setattr(identifier, key, "")
    for key, value in query.items():
        if value:
            setattr(identifier, key, value)
    ae = _new_ae(settings)
    ae.add_requested_context(model)
    assoc = _associate(settings, ae)
    rows = []
    try:
        for status, found in assoc.send_c_find(identifier, model):
            _status_ok(status, "search", settings)
            if found is not None and int(status.Status) in (0xFF00, 0xFF01):
                rows.append({k: str(found.get(k, "") or "") for k in RETURN_KEYS[level]})
    finally:
        assoc.release()
    return rows


def get(settings: PacsSettings, folder: str | os.PathLike, *, study_uid: str,
        series_uid: str, overwrite: bool = False) -> Path:
    """C-GET one series into ``folder`` (written whole or not at all), one file per
    instance, exactly as the PACS sent it (file meta added). Returns the folder."""
    from pydicom.dataset import Dataset
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    from napari_petite.io.atomic import atomic_dir

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID, identifier.SeriesInstanceUID = study_uid, series_uid
    ae = _new_ae(settings)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for uid in GET_STORAGE:
        ae.add_requested_context(uid)
    roles = [build_role(uid, scp_role=True) for uid in GET_STORAGE]
    with atomic_dir(Path(folder).expanduser(), overwrite=overwrite, kind="DICOM series",
                    mark=False) as tmp:
        received: list[Path] = []

        def store(event) -> int:
            sop_uid = str(event.request.AffectedSOPInstanceUID)
            name = tmp / f"{len(received) + 1:05d}_{sop_uid[-24:]}.dcm"
            name.write_bytes(event.encoded_dataset())  # inside the temporary folder
            received.append(name)
            return 0x0000

        assoc = _associate(settings, ae, ext_neg=roles,
                           evt_handlers=[(evt.EVT_C_STORE, store)])
        try:
            for status, _ in assoc.send_c_get(identifier,
                                              StudyRootQueryRetrieveInformationModelGet):
                _status_ok(status, "retrieval", settings)
        finally:
            assoc.release()
        if not received:
            raise NetworkError(f"{settings.describe()} sent no images of series {series_uid}; "
                               "check the study and series UIDs with a search first.")
    return Path(folder).expanduser()


def dicom_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The DICOM files of ``paths`` (files, or folders searched recursively), sorted."""
    from napari_petite.io.dicom import is_dicom_path

    files: list[Path] = []
    for item in (Path(p).expanduser() for p in paths):
        if not item.exists():
            raise ConfigError(f"{item} does not exist; check the path.")
        found = [item] if item.is_file() else sorted(
            p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
        files.extend(p for p in found if is_dicom_path(p))
    if not files:
        raise ConfigError("No DICOM files were found to send; give the folder of an exported "
                          "series.")
    return files


def send(settings: PacsSettings, paths: Iterable[str | os.PathLike]) -> int:
    """C-STORE every DICOM file of ``paths``; returns how many the PACS stored."""
    from pydicom import dcmread

    files = dicom_files(paths)
    datasets = [dcmread(f) for f in files]
    ae = _new_ae(settings)
    for cls, syntax in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                               for ds in datasets}):
        ae.add_requested_context(cls, syntax)
    assoc = _associate(settings, ae)
    try:
        for file, ds in zip(files, datasets, strict=True):
            status = assoc.send_c_store(ds)
            _status_ok(status, f"storage of {file.name}", settings)
    finally:
        assoc.release()
    return len(files)
