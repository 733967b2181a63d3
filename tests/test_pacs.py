"""A real PACS round trip: Orthanc on 127.0.0.1 (``pacs_server.orthanc``), driven through
``napari_petite.io.pacs`` and ``petite pacs`` as a real subprocess: echo, store a series,
find it, get it back identical (pixel data and UIDs), send a derived series and find it;
bad addresses, refused associations and timeouts are sentences."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pydicom
import pytest
from dicom_fixtures import pet_volume, write_pet_series
from pacs_server import PACS_AET, TEST_AET, orthanc  # noqa: F401 (the fixture)
from test_cli import petite

from napari_petite.errors import ConfigError, NetworkError
from napari_petite.io import pacs


def _by_uid(folder):
    return {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, sorted(folder.iterdir()))}


def test_round_trip_through_orthanc(tmp_path, orthanc):  # noqa: F811
    from napari_petite.io.dicom import read_series
    from napari_petite.io.dicom_export import write_derived_series

    settings = orthanc.settings()
    pacs.echo(settings)
    src = write_pet_series(tmp_path / "src", pet_volume(seed=5), spacing=(2.0, 1.5, 1.25))
    assert pacs.send(settings, [src]) == 6
    assert len(orthanc.rest("/instances")) == 6

    patients = pacs.find(settings, "patient", PatientID="PETITE-*")
    assert [p["PatientID"] for p in patients] == ["PETITE-001"]
    (study,) = pacs.find(settings, "study", PatientID="PETITE-001")
    (series,) = pacs.find(settings, "series", StudyInstanceUID=study["StudyInstanceUID"],
                          Modality="PT")
    assert series["NumberOfSeriesRelatedInstances"] == "6"
    assert series["SeriesDescription"] == "PET AC"

    got = pacs.get(settings, tmp_path / "got", study_uid=study["StudyInstanceUID"],
                   series_uid=series["SeriesInstanceUID"])
    sent, back = _by_uid(src), _by_uid(got)
    assert sorted(back) == sorted(sent)
    for uid, ds in back.items():
        original = sent[uid]
        assert ds.PixelData == original.PixelData
        for key in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID",
                    "SOPClassUID", "RescaleSlope", "ImagePositionPatient"):
            assert ds[key].value == original[key].value, key
    like = read_series(got)
    np.testing.assert_array_equal(like.data, read_series(src).data)

    derived = write_derived_series(like.data * 0.5, like, tmp_path / "derived",
                                   description="PETITE test")
    out = petite("pacs", "send", str(derived), "--host", "127.0.0.1", "--port",
                 str(orthanc.dicom_port), "--called-aet", PACS_AET, "--calling-aet", TEST_AET,
                 "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sent"] == 6
    config = tmp_path / "pacs.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": orthanc.dicom_port,
                                  "called_aet": PACS_AET, "calling_aet": TEST_AET}))
    out = petite("pacs", "find", "--config", str(config), "--level", "series",
                 "--study-uid", study["StudyInstanceUID"], "--json")
    assert out.returncode == 0, out.stderr
    found = {row["SeriesDescription"] for row in json.loads(out.stdout)["matches"]}
    assert found == {"PET AC", "PETITE test"}
    out = petite("pacs", "echo", "--config", str(config))
    assert out.returncode == 0 and PACS_AET in out.stdout


def test_refusals_are_sentences(tmp_path, orthanc):  # noqa: F811
    with pytest.raises(NetworkError, match="refused the association of NOBODY"):
        pacs.echo(orthanc.settings(calling_aet="NOBODY"))
    with pytest.raises(NetworkError, match="refused the association"):
        pacs.echo(orthanc.settings(called_aet="WRONG_AET"))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(NetworkError, match="Nothing accepts connections"):
        pacs.echo(orthanc.settings(port=closed))
    with pytest.raises(NetworkError, match="cannot be resolved"):
        pacs.echo(orthanc.settings(host="no-such-pacs.invalid"))
    with pytest.raises(NetworkError, match="answered the retrieval with status 0x"):
        pacs.get(orthanc.settings(), tmp_path / "none", study_uid="1.2.3", series_uid="1.2.4")
    assert not (tmp_path / "none").exists()


def test_timeout_is_a_sentence():
    """A server that accepts the connection and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        held = []
        threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
        settings = pacs.PacsSettings("127.0.0.1", port, "SILENT", "PETITE", timeout_s=1.0)
        with pytest.raises(NetworkError, match="did not complete the association"):
            pacs.echo(settings)


def test_settings_from_file_and_options(tmp_path, monkeypatch):
    config = tmp_path / "pacs.json"
    config.write_text(json.dumps({"host": "pacs.example", "port": 104, "called_aet": "MAIN"}))
    settings = pacs.load_settings(config, port=11112)
    assert (settings.host, settings.port, settings.called_aet, settings.calling_aet) == \
        ("pacs.example", 11112, "MAIN", "PETITE")
    monkeypatch.setenv(pacs.SETTINGS_ENV, str(config))
    assert pacs.load_settings().port == 104
    monkeypatch.setenv(pacs.SETTINGS_ENV, str(tmp_path / "none.json"))
    with pytest.raises(ConfigError, match="host, port, called_aet are not set"):
        pacs.load_settings()
    with pytest.raises(ConfigError, match="AE title 'A_TITLE_FAR_TOO_LONG' is not valid"):
        pacs.load_settings(host="h", port=1, called_aet="A_TITLE_FAR_TOO_LONG")
    config.write_text(json.dumps({"host": "h", "port": 1, "called_aet": "X", "pot": 2}))
    with pytest.raises(ConfigError, match="unknown keys pot"):
        pacs.load_settings(config)
    saved = pacs.save_settings(settings, tmp_path / "saved.json")
    assert pacs.load_settings(saved) == settings
    out = petite("pacs", "echo", "--config", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "does not exist" in out.stderr
