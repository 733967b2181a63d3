"""*Open from PACS…* (Scanner data) and *Send to PACS* (Reconstruct & compare) on a real
napari viewer against a real Orthanc: search, retrieve a PET series as a layer, send a
derived series; a wrong port is a notification and the dialog stays usable."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from dicom_fixtures import pet_volume, write_pet_series
from pacs_server import PACS_AET, TEST_AET, orthanc  # noqa: F401 (the fixture)

from napari_petite.io import pacs

pytestmark = pytest.mark.gui


def _errors():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]


def test_open_from_pacs_and_send_back(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                      orthanc):  # noqa: F811
    from napari_petite.io.dicom import read_series
    from napari_petite.io.dicom_export import write_derived_series

    config = tmp_path / "pacs.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": orthanc.dicom_port,
                                  "called_aet": PACS_AET, "calling_aet": TEST_AET,
                                  "timeout_s": 10}))
    monkeypatch.setenv(pacs.SETTINGS_ENV, str(config))
    src = write_pet_series(tmp_path / "src", pet_volume((6, 8, 10), seed=7),
                           spacing=(2.0, 1.5, 1.25))
    pacs.send(orthanc.settings(), [src])

    viewer = make_napari_viewer()
    _, data = viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    dialog = data.pacs_button.dialog()
    assert dialog.form.port.value() == orthanc.dicom_port  # from the settings file
    dialog.search("series")
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=30_000)
    assert dialog.rows[0]["Modality"] == "PT"
    dialog.table.selectRow(0)
    dialog.retrieve()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=60_000)
    np.testing.assert_array_equal(viewer.layers[0].data, read_series(src).data)

    # a wrong port: one sentence, and the dialog is usable again
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    dialog.form.port.setValue(closed)
    n = len(_errors())
    dialog.search("patient")
    qtbot.waitUntil(lambda: len(_errors()) > n and dialog.search_button.isEnabled(),
                    timeout=30_000)
    assert "Nothing accepts connections" in _errors()[-1]

    # Send to PACS offers the last DICOM export
    _, compare = viewer.window.add_plugin_dock_widget("napari-petite", "Reconstruct & compare")
    assert not compare.send_pacs.isEnabled()
    like = read_series(src)
    derived = write_derived_series(like.data * 0.5, like, tmp_path / "derived",
                                   description="PETITE gui")
    compare.send_pacs.set_folder(derived)
    from napari_petite._widgets.pacs_settings import PacsSettingsForm

    compare.send_pacs.send(PacsSettingsForm())
    qtbot.waitUntil(lambda: compare.send_pacs.sent == 6, timeout=60_000)
    assert len(orthanc.rest("/series")) == 2

    # closing the dock mid-send waits for the transfer and drops its calls back into the
    # widgets that are going away
    task = compare.send_pacs.send(PacsSettingsForm())
    compare.shutdown()
    assert task.on_done is None
    qtbot.waitUntil(lambda: not task.worker.is_running, timeout=60_000)
    assert len(orthanc.rest("/series")) == 2  # the same instances again: nothing new
