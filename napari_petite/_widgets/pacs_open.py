"""*Open from PACS…*: search a PACS by patient, study and series, then retrieve a PET series
as a scan or into the dataset.

Every request runs in a worker (:class:`~napari_petite._widgets.tasks.Task`) so a slow or
absent PACS never freezes the window; a failure is one notification. A retrieved series is
an ordinary DICOM series folder: opened through the Scanner data dock's *Open a scan* path,
or written as ``<dataset>/<target>/<subject>/low`` (or ``full``), which the dataset layout
accepts wherever ``low.nii.gz`` stands.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_petite._widgets.pacs_settings import PacsSettingsForm
from napari_petite._widgets.tasks import Failure, Task, notify_failure
from napari_petite.errors import PetiteError

LEVELS = ("patient", "study", "series")


class OpenFromPacsDialog(QDialog):
    """Search, choose a series, retrieve it. ``open_scan(folder)`` opens a retrieved series;
    ``dataset_folder()`` gives ``<dataset>/<target>`` (or None) for *Retrieve into dataset*."""

    def __init__(self, open_scan, dataset_folder, refresh_dataset, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self._open_scan, self._dataset_folder = open_scan, dataset_folder
        self._refresh_dataset = refresh_dataset
        self.task: Task | None = None
        self.rows: list[dict] = []
        self.form = PacsSettingsForm()
        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.level.setCurrentText("series")
        self.patient_id, self.patient_name = QLineEdit(), QLineEdit()
        self.study_uid = QLineEdit()
        self.patient_name.setPlaceholderText("e.g. DOE^* (wildcards * ?)")
        query = QFormLayout()
        query.addRow("search", self.level)
        query.addRow("patient ID", self.patient_id)
        query.addRow("patient name", self.patient_name)
        query.addRow("study UID", self.study_uid)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(lambda: self.search(self.level.currentText()))
        self.table = QTableWidget(0, 0)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.itemDoubleClicked.connect(lambda *_: self._drill_down())
        self.scan_button = QPushButton("Retrieve as scan")
        self.scan_button.clicked.connect(lambda: self.retrieve())
        self.dataset_button = QPushButton("Retrieve into dataset…")
        self.dataset_button.clicked.connect(self._dataset_dialog)
        self.status = QLabel("Search the PACS; double-click a patient or study to list what "
                             "it holds.")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.search_button, self.scan_button, self.dataset_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addLayout(query)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)

    # -- search ------------------------------------------------------------------------------
    def search(self, level: str) -> Task | None:
        """C-FIND at ``level`` with the query fields, in a worker; fills the table."""
        from napari_petite.io import pacs

        try:
            settings = self.form.settings()
        except PetiteError as err:
            notify_failure(err)
            return None
        query = {"PatientID": self.patient_id.text().strip(),
                 "PatientName": self.patient_name.text().strip(),
                 "StudyInstanceUID": self.study_uid.text().strip() if level != "patient" else ""}

        def body(_control):
            return settings, pacs.find(settings, level, **query)
            yield  # unreachable: makes the body the generator a Task runs

        def done(result) -> None:
            if isinstance(result, tuple):
                self.form.remember(result[0])
                self._show(level, result[1])

        return self._start(Task(body, desc=f"searching the PACS ({level})", on_done=done),
                           f"Searching {settings.describe()}…")

    def _show(self, level: str, rows: list[dict]) -> None:
        self.level.setCurrentText(level)
        self.rows = rows
        keys = list(rows[0]) if rows else []
        self.table.clear()
        self.table.setColumnCount(len(keys))
        self.table.setHorizontalHeaderLabels(keys)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(keys):
                self.table.setItem(r, c, QTableWidgetItem(row[key]))
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(rows)} {level} match(es).")

    def _drill_down(self) -> None:
        row = self.selected()
        if row is None:
            return
        if "SeriesInstanceUID" not in row and "StudyInstanceUID" in row:
            self.study_uid.setText(row["StudyInstanceUID"])
            self.search("series")
        elif "StudyInstanceUID" not in row:
            self.patient_id.setText(row.get("PatientID", ""))
            self.search("study")

    def selected(self) -> dict | None:
        index = self.table.currentRow()
        return self.rows[index] if 0 <= index < len(self.rows) else None

    # -- retrieve ----------------------------------------------------------------------------
    def retrieve(self, folder: str | Path | None = None, *, into_dataset: bool = False
                 ) -> Task | None:
        """C-GET the chosen series (into ``folder``, default the cache) in a worker, then open
        it as a scan, or refresh the dataset it was written into."""
        from napari_petite._resources import cache_dir
        from napari_petite.io import pacs

        row = self.selected()
        if row is None or "SeriesInstanceUID" not in row:
            notify_failure(PetiteError("Choose a series in the list first (search by series, "
                                       "or double-click a study)."))
            return None
        if row.get("Modality") and row["Modality"] != "PT":
            notify_failure(PetiteError(f"The chosen series is {row['Modality']}, not PET; "
                                       "choose the study's PET series."))
            return None
        try:
            settings = self.form.settings()
        except PetiteError as err:
            notify_failure(err)
            return None
        uid = row["SeriesInstanceUID"]
        dest = Path(folder) if folder else cache_dir() / "pacs" / uid
        overwrite = folder is None  # the cache copy may be refreshed; a user's folder not

        def body(_control):
            return pacs.get(settings, dest, study_uid=row["StudyInstanceUID"], series_uid=uid,
                            overwrite=overwrite)
            yield  # unreachable: makes the body the generator a Task runs

        def done(result) -> None:
            if isinstance(result, Path):
                self.status.setText(f"Retrieved series {uid} into {result}.")
                if into_dataset:
                    self._refresh_dataset()
                else:
                    self._open_scan(result)

        return self._start(Task(body, desc="retrieving from the PACS", on_done=done),
                           f"Retrieving series {uid} from {settings.describe()}…")

    def _dataset_dialog(self) -> None:
        from qtpy.QtWidgets import QInputDialog

        target = self._dataset_folder()
        if target is None:
            notify_failure(PetiteError("Open a dataset and choose its target scanner in "
                                       "Scanner data first; the series becomes a subject "
                                       "there."))
            return
        subject, ok = QInputDialog.getText(self, "Retrieve into dataset", "subject id:")
        if not ok or not subject.strip():
            return
        role, ok = QInputDialog.getItem(self, "Retrieve into dataset", "the series is the",
                                        ["low", "full"], 0, False)
        if ok:
            self.retrieve(Path(target) / subject.strip() / role, into_dataset=True)

    def _start(self, task: Task, text: str) -> Task:
        def finished(result) -> None:
            self.search_button.setEnabled(True)
            if isinstance(result, Failure):
                self.status.setText("Failed; see the notification.")

        done = task.on_done

        def both(result) -> None:
            finished(result)
            if done is not None:
                done(result)

        task.on_done = both
        self.search_button.setEnabled(False)
        self.status.setText(text)
        self.task = task
        return task.start()

    def done(self, code: int) -> None:  # closing the dialog leaves no worker behind
        if self.task is not None and self.task.running:
            self.task.shutdown(self.form.timeout.value() + 5)
        super().done(code)


class OpenFromPacsButton(QPushButton):
    """The Scanner data dock's *Open from PACS…*: opens the dialog wired to that dock."""

    def __init__(self, dock) -> None:
        super().__init__("Open from PACS…")
        self.setToolTip("Search a PACS (patient, study, series) and retrieve a PET series as a "
                        "scan or into the dataset")
        self._dock = dock
        self._dialog: OpenFromPacsDialog | None = None
        self.clicked.connect(lambda: self.dialog().show())

    def dialog(self) -> OpenFromPacsDialog:
        """The dialog (made once per dock)."""
        if self._dialog is None:
            dock = self._dock

            def dataset_folder():
                session = dock.session
                if session.dataset is None or not session.target:
                    return None
                return Path(session.dataset.root) / session.target

            self._dialog = OpenFromPacsDialog(
                dock.open_scan, dataset_folder,
                lambda: dock.open_dataset(dock.session.dataset.root), parent=self)
        return self._dialog
