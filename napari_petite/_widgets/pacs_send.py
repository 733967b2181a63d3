"""*Send to PACS*: the derived series just exported goes to the PACS (C-STORE) in a worker.

Enabled once *Export DICOM…* wrote a series; the PACS settings are the shared form's
(:mod:`.pacs_settings`), asked for in a small dialog. A failure is one notification.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QDialog, QDialogButtonBox, QPushButton, QVBoxLayout

from napari_petite._widgets.pacs_settings import PacsSettingsForm
from napari_petite._widgets.tasks import Task, notify_failure
from napari_petite.errors import PetiteError


class SendToPacsButton(QPushButton):
    """Sends ``folder`` (the last DICOM export) to the PACS."""

    def __init__(self, parent=None) -> None:
        super().__init__("Send to PACS…", parent)
        self.folder: Path | None = None
        self.task: Task | None = None
        self.sent: int | None = None
        self.setToolTip("Send the exported derived DICOM series to the PACS (C-STORE)")
        self.setEnabled(False)
        self.clicked.connect(self._dialog)

    def set_folder(self, folder) -> None:
        """The exported series to offer (None: nothing exported yet)."""
        self.folder = Path(folder) if folder else None
        self.setEnabled(self.folder is not None)

    def _dialog(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Send to PACS")
        form = PacsSettingsForm()
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                               | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(dialog.accept)
        box.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(form)
        layout.addWidget(box)
        if dialog.exec():
            self.send(form)

    def send(self, form: PacsSettingsForm) -> Task | None:
        """C-STORE the folder with the form's settings, in a worker."""
        from napari.utils.notifications import show_info

        from napari_petite.io import pacs

        folder = self.folder
        try:
            settings = form.settings()
        except PetiteError as err:
            notify_failure(err)
            return None

        def body(_control):
            return pacs.send(settings, [folder])
            yield  # unreachable: makes the body the generator a Task runs

        def done(result) -> None:
            self.setEnabled(True)
            if isinstance(result, int):
                self.sent = result
                form.remember(settings)
                show_info(f"Sent {result} file(s) of {folder.name} to {settings.describe()}.")

        self.setEnabled(False)
        self.task = Task(body, desc="sending to the PACS", on_done=done)
        return self.task.start()
