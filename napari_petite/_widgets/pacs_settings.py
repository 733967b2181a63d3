"""Where the PACS is, as a small form: host, port, AE titles, timeout.

Filled from the settings file ``petite pacs`` reads (:func:`napari_petite.io.pacs.load_settings`)
and written back to it once a request succeeded, so the docks and the command line share one
PACS. Nothing about the PACS is built in.
"""

from __future__ import annotations

import contextlib

from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox, QWidget


class PacsSettingsForm(QWidget):
    """The fields of :class:`~napari_petite.io.pacs.PacsSettings`."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.host, self.called, self.calling = QLineEdit(), QLineEdit(), QLineEdit()
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("port")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1.0, 600.0)
        self.timeout.setSuffix(" s")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("PACS host", self.host)
        form.addRow("port", self.port)
        form.addRow("PACS AE title", self.called)
        form.addRow("our AE title", self.calling)
        form.addRow("timeout", self.timeout)
        self.load()

    def load(self) -> None:
        """Show the settings file's values (empty fields where it has none)."""
        import json

        from napari_petite.io.pacs import settings_path

        values: dict = {}
        with contextlib.suppress(OSError, ValueError):  # no file yet, or a damaged one
            values = json.loads(settings_path().read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            values = {}
        self.host.setText(str(values.get("host", "")))
        self.port.setValue(int(values.get("port", 0) or 0))
        self.called.setText(str(values.get("called_aet", "")))
        self.calling.setText(str(values.get("calling_aet", "PETITE")))
        self.timeout.setValue(float(values.get("timeout_s", 30.0)))

    def settings(self):
        """The form as PacsSettings (ConfigError with a sentence when incomplete)."""
        from napari_petite.io.pacs import load_settings

        return load_settings(None, host=self.host.text().strip() or None,
                             port=self.port.value() or None,
                             called_aet=self.called.text().strip() or None,
                             calling_aet=self.calling.text().strip() or None,
                             timeout_s=self.timeout.value())

    def remember(self, settings) -> None:
        """Keep settings that worked for the next session (and for ``petite pacs``)."""
        from napari_petite.io.pacs import save_settings

        with contextlib.suppress(Exception):  # an unwritable config folder must not fail it
            save_settings(settings)
