"""*Import a base…*: a MONAI UNETR state dict becomes the base the Fine-tune dock adapts.

The same import as ``petite import-base`` (:mod:`napari_petite.models.monai_import`: weights
read without unpickling, options read from the tensors, checked against MONAI's own UNETR),
run in a worker so the window stays responsive; the written checkpoint is then chosen as the
base. A refused file is a notification, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QPushButton

from napari_petite._widgets.tasks import Failure, Task


class ImportBaseButton(QPushButton):
    """Asks for a MONAI state dict and where to write the checkpoint, imports it in a worker,
    then sets it as the chooser's base."""

    def __init__(self, chooser, parent=None) -> None:
        super().__init__("Import a base…", parent)
        self.chooser = chooser
        self.task: Task | None = None
        self.setToolTip("Turn a MONAI UNETR state dict (.pt / .pth read as weights only, or "
                        ".safetensors) into a base checkpoint and choose it")
        self.clicked.connect(self._dialogs)

    def _dialogs(self) -> None:
        source, _ = QFileDialog.getOpenFileName(
            self, "MONAI UNETR state dict", "",
            "PyTorch state dict (*.pt *.pth *.safetensors)")
        if not source:
            return
        suggested = str(Path(source).with_name(Path(source).stem + "_base.safetensors"))
        out, _ = QFileDialog.getSaveFileName(self, "Write the base checkpoint as", suggested,
                                             "safetensors checkpoint (*.safetensors)")
        if out:
            self.start(source, out)

    def start(self, source, out) -> Task:
        """Import ``source`` into ``out`` in a worker; the base follows when it is written."""
        from napari_petite.models.monai_import import import_base

        def body(_control):
            return import_base(source, out, command="napari-petite Fine-tune dock: "
                               "Import a base…")[0]
            yield  # unreachable: makes the body the generator a Task runs

        def done(result) -> None:
            self.setEnabled(True)
            if result is not None and not isinstance(result, Failure):
                self.chooser.set_base(result)

        self.setEnabled(False)
        self.task = Task(body, desc="importing the MONAI base", on_done=done, torch=True)
        return self.task.start()
