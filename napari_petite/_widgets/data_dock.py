"""The "Scanner data" dock: open (or generate) a dataset, look at subjects, choose the split.

Volumes open as image layers with ``scale`` = voxel spacing (mm) and the NIfTI geometry in
``metadata`` (so nothing derived from them loses spacing or affine), a PET colormap, and
linked contrast limits so low / full / truth are always compared on the same scale. Reading
and generating happen in workers; the dock only builds widgets and layers.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from napari_petite._widgets.layout import scroll_layout
from napari_petite._widgets.pacs_open import OpenFromPacsButton
from napari_petite._widgets.split_form import SplitForm
from napari_petite._widgets.state import ROLE_KEY, session_for
from napari_petite._widgets.tasks import Task, TaskDock, notify_failure
from napari_petite.errors import PetiteError

#: what the "Sample dataset" button generates (small grids: seconds per subject)
SAMPLE_SCANNERS = ("mct", "vision")
SAMPLE_SUBJECTS = 4


def profile_summary(profile: dict, scanner) -> str:
    """One or two lines about a scanner profile (values may be ``{"value": ...}`` records)."""

    def value(key):
        v = profile.get(key)
        return v.get("value") if isinstance(v, dict) else v

    parts = [str(profile.get("name") or scanner.id)]
    fwhm = value("resolution_fwhm_mm")
    if fwhm is not None:
        fwhm = fwhm[0] if isinstance(fwhm, list | tuple) else fwhm
        parts.append(f"FWHM {float(fwhm):.1f} mm")
    tof = value("tof_fwhm_ps")
    if tof:
        parts.append(f"TOF {float(tof):.0f} ps")
    sens = value("sensitivity_cps_per_kbq")
    if sens:
        parts.append(f"{float(sens):.1f} cps/kBq")
    first = scanner.subjects[0] if scanner.subjects else None
    if first is not None and first.shape:
        sp = " x ".join(f"{s:.2f}" for s in first.spacing)
        parts.append(f"grid {' x '.join(map(str, first.shape))} (z,y,x) @ {sp} mm")
    parts.append(f"{len(scanner.subjects)} subjects")
    return " | ".join(parts)


def sample_dataset_dir() -> Path:
    """The cached sample dataset, keyed like the sample subjects so that a new simulator or
    changed profiles simulate it afresh instead of showing stale data."""
    from napari_petite._resources import cache_dir
    from napari_petite.simulate.napari_sample import cache_key

    return cache_dir() / f"sample-dataset-{cache_key(SAMPLE_SCANNERS)}"


class ScannerDataDock(TaskDock, QWidget):
    """Dataset folder, scanners and subjects, layer loading, source/target and split."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.task: Task | None = None
        self.profile = QLabel("Open a dataset folder or press 'Sample dataset'.")
        self.profile.setWordWrap(True)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #e0a040;")
        self.problems.hide()
        self.split_form = SplitForm()
        self.split_form.changed.connect(self._update_split)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout = scroll_layout(self)
        layout.addLayout(self._folder_row())
        layout.addWidget(self._subject_tree(), 1)
        layout.addWidget(self.profile)
        layout.addWidget(self.problems)
        self._scan_buttons(layout)
        layout.addWidget(self.split_form)
        layout.addWidget(self.status)
        self._set_busy(False)
        self.stop_on_destroy()

    def _folder_row(self) -> QHBoxLayout:
        """Dataset folder, Browse… and Sample dataset."""
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("dataset folder (<root>/<scanner>/<subject>/)")
        self.folder.returnPressed.connect(self._open_typed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.sample_button = QPushButton("Sample dataset")
        self.sample_button.setToolTip(
            f"Simulate (first time, about a minute) or reopen a small dataset: scanners "
            f"{', '.join(SAMPLE_SCANNERS)}, {SAMPLE_SUBJECTS} subjects each.")
        self.sample_button.clicked.connect(self.open_sample)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        row.addWidget(self.sample_button)
        return row

    def _subject_tree(self) -> QTreeWidget:
        """Scanners and their subjects, with the split's marks in the *use* column."""
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["scanner / subject", "shape (z,y,x)", "spacing (mm)", "use"])
        self.tree.headerItem().setToolTip(3, "the target's subjects: train (fine-tuning), "
                                             "validate (picks the best step), test (judging)")
        self.tree.setMinimumHeight(110)
        self.tree.currentItemChanged.connect(self._show_profile)
        self.tree.itemDoubleClicked.connect(lambda *_: self.load_selected())
        return self.tree

    def _scan_buttons(self, layout) -> None:
        """Load the chosen subject, open a single scan, make a subject from a dynamic scan."""
        self.load_button = QPushButton("Load subject as layers")
        self.load_button.clicked.connect(self.load_selected)
        self.scan_button = QPushButton("Open a scan…")
        self.scan_button.setToolTip("One scan outside a dataset: a NIfTI file, or a DICOM PET "
                                    "series folder (a folder holding several series lists "
                                    "them to choose from)")
        self.scan_button.clicked.connect(self._scan_dialog)
        self.pacs_button = OpenFromPacsButton(self)
        self.pairs_button = QPushButton("Add a subject from a dynamic scan…")
        self.pairs_button.setToolTip(
            "A dynamic FDG scan (4D NIfTI + BIDS sidecar, or a multi-frame DICOM series) "
            "becomes a training subject of the target scanner: low count = the first 5 "
            "minutes, full count = the mean of 0-30 minutes")
        self.pairs_button.clicked.connect(self._pairs_dialog)
        row = QHBoxLayout()
        row.addWidget(self.load_button)
        row.addWidget(self.scan_button)
        layout.addLayout(row)
        layout.addWidget(self.pacs_button)
        layout.addWidget(self.pairs_button)

    # -- dataset -----------------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder", self.folder.text())
        if folder:
            self.open_dataset(folder)

    def _open_typed(self) -> None:
        if self.folder.text().strip():
            self.open_dataset(self.folder.text().strip())

    def open_dataset(self, root) -> bool:
        """Discover ``root`` and list it; problems are listed, not fatal. True when opened."""
        from napari_petite.io.dataset import discover

        try:
            dataset = discover(root, strict=False)
        except PetiteError as err:
            notify_failure(err)
            return False
        self.folder.setText(str(dataset.root))
        self._fill(dataset)
        self.session.set_dataset(dataset)
        self._update_split()
        n = sum(len(s.subjects) for s in dataset.scanners.values())
        self.status.setText(f"Opened {dataset.root.name}: {len(dataset.scanners)} scanner(s), "
                            f"{n} subject(s). Choose a subject and load it, or go on to "
                            "'Fine-tune'.")
        return True

    def _fill(self, dataset) -> None:
        self.tree.clear()
        for sid, scanner in dataset.scanners.items():
            top = QTreeWidgetItem([sid, "", "", ""])
            top.setData(0, Qt.ItemDataRole.UserRole, (sid, None))
            for subject in scanner.subjects:
                spacing = " x ".join(f"{s:.3g}" for s in subject.spacing or ())  # 2 x 1.65..
                item = QTreeWidgetItem([subject.id, " x ".join(map(str, subject.shape or ())),
                                        spacing])
                item.setData(0, Qt.ItemDataRole.UserRole, (sid, subject.id))
                top.addChild(item)
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        for column in range(3):  # whole shapes and spacings, not "2.00, 1.65, 1…"
            self.tree.resizeColumnToContents(column)
        if dataset.scanners:
            first = next(iter(dataset.scanners.values()))
            self.profile.setText(profile_summary(first.profile, first))
        else:  # nothing of the previous dataset may stay on screen
            self.profile.setText(f"No scanner folders with subjects in {dataset.root}; a "
                                 "dataset holds <scanner>/<subject>/low.nii.gz and full.nii.gz.")
        if dataset.problems:
            shown = "\n".join(f"• {p}" for p in dataset.problems[:5])
            more = f"\n… and {len(dataset.problems) - 5} more" if len(dataset.problems) > 5 else ""
            self.problems.setText(f"Skipped (fix and reopen):\n{shown}{more}")
            self.problems.show()
        else:
            self.problems.hide()
        self.split_form.set_scanners(list(dataset.scanners))

    def _show_profile(self, item, _previous=None) -> None:
        dataset = self.session.dataset
        if item is None or dataset is None:
            return
        sid, _ = item.data(0, Qt.ItemDataRole.UserRole)
        scanner = dataset.scanners[sid]
        self.profile.setText(profile_summary(scanner.profile, scanner))

    def open_sample(self) -> None:
        """Open the cached sample dataset, simulating it in a worker the first time."""
        folder = sample_dataset_dir()
        if folder.is_dir():
            self.open_dataset(folder)
            return

        total = len(SAMPLE_SCANNERS) * SAMPLE_SUBJECTS
        holder: dict = {}

        def body(_control):
            from napari_petite.simulate.dataset import make_dataset

            done: list = []

            def one(info):
                done.append(info)
                holder["task"].emit((len(done), info["subject"]))

            make_dataset(folder, scanners=SAMPLE_SCANNERS, subjects=SAMPLE_SUBJECTS,
                         size="small", progress=one)
            yield "done"
            return folder

        def progress(value):
            if isinstance(value, tuple) and self.live:
                self.status.setText(f"Simulating the sample dataset (first time only): "
                                    f"{value[0]}/{total} subjects ({value[1]})…")
                self.task.set_progress(value[0])

        self.status.setText(f"Simulating the sample dataset (first time only): 0/{total} "
                            "subjects, about 10 s each…")
        task = Task(body, desc="simulating sample dataset", total=total, on_yield=progress,
                    on_done=lambda r: self.open_dataset(r) if isinstance(r, Path) else None)
        holder["task"] = task
        self._run(task)

    # -- one scan ----------------------------------------------------------------------------
    def _scan_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "DICOM series folder (Cancel: a file)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "NIfTI, ECAT 7 or DICOM file")
        if path:
            self.open_scan(path)

    def open_scan(self, path, series: str | None = None) -> None:
        """Open one scan as a layer; a DICOM folder of several PET series asks which one."""
        from napari_petite.io.dicom import is_dicom_path, list_series

        if series is None and is_dicom_path(path) and Path(path).is_dir():
            try:
                pets = [s for s in list_series(path) if s.modality == "PT"]
            except PetiteError as err:
                notify_failure(err)
                return
            if len(pets) > 1:
                series = self._choose_series(pets)
                if series is None:
                    return

        def body(_control):
            from napari_petite.io.layers import volume_to_layer_data
            from napari_petite.io.volumes import read_any

            yield "reading"
            data, kwargs, kind = volume_to_layer_data(read_any(path, series=series))
            kwargs["metadata"][ROLE_KEY] = {"kind": "low"}  # what a scan is opened for
            return [(data, kwargs, kind)]

        self.status.setText(f"Reading {Path(path).name}…")
        self._run(Task(body, desc=f"reading {Path(path).name}", on_done=self._add_layers))

    def _choose_series(self, pets) -> str | None:
        from qtpy.QtWidgets import QInputDialog

        labels = [f"{s.description or 'no description'} — {s.n_frames} slices, "
                  f"{s.study_date} ({s.uid})" for s in pets]
        choice, ok = QInputDialog.getItem(self, "Several PET series", "Series to open:",
                                          labels, 0, False)
        return pets[labels.index(choice)].uid if ok and choice in labels else None

    # -- pairs from dynamic scans ------------------------------------------------------------
    def _pairs_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Dynamic scan (4D NIfTI, ECAT 7 .v or DICOM)")
        if path:
            self.add_dynamic_subject(path)

    def add_dynamic_subject(self, path, subject: str | None = None) -> None:
        """Turn a dynamic scan into a subject folder of the target scanner, in a worker, and
        list it (the scan is never modified)."""
        dataset, target = self.session.dataset, self.session.target
        if dataset is None or target is None:
            notify_failure(PetiteError("Open a dataset and choose its target scanner first: "
                                       "the new subject goes into that scanner's folder."))
            return
        path = Path(path)
        name = subject or path.name.split(".")[0]
        folder = dataset.scanners[target].path / name

        def body(_control):
            from napari_petite.io.dynamic import make_pair, read_dynamic

            yield "reading"
            return make_pair(read_dynamic(path), folder)

        def done(meta):
            if isinstance(meta, dict):
                self.open_dataset(dataset.root)
                self.status.setText(f"Added {target}/{name}: low = {len(meta['low']['frames'])}"
                                    f" frame(s), full = {len(meta['full']['frames'])} frame(s) "
                                    f"of {path.name}.")

        self.status.setText(f"Making a low/full pair from {path.name}…")
        self._run(Task(body, desc=f"pair from {path.name}", on_done=done))

    # -- split -------------------------------------------------------------------------------
    def _update_split(self, *_) -> None:
        form = self.split_form
        split = form.split(self.session.dataset)
        target = form.target.currentText() or None
        self._mark_split(form.source.currentText() or None, target, split)
        self.session.set_selection(form.source.currentText() or None, target, split)

    def _mark_split(self, source, target, split) -> None:
        """The "use" column: the source (base model's) scanner, the target, and what each
        target subject is for."""
        roles = {} if split is None else {
            **{s: "train" for s in split.train}, **{s: "validate" for s in split.val},
            **{s: "test" for s in split.test}}
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            mine = top.text(0) == target
            top.setText(3, "target" if mine else "source" if top.text(0) == source else "")
            for k in range(top.childCount()):
                child = top.child(k)
                child.setText(3, roles.get(child.text(0), "") if mine else "")

    # the split form's widgets, under the names the tests and benchmarks use
    source = property(lambda self: self.split_form.source)
    target = property(lambda self: self.split_form.target)
    n_val = property(lambda self: self.split_form.n_val)
    n_test = property(lambda self: self.split_form.n_test)

    # -- layers ------------------------------------------------------------------------------
    def selected_subject(self):
        item = self.tree.currentItem()
        dataset = self.session.dataset
        if item is None or dataset is None:
            return None
        sid, subject_id = item.data(0, Qt.ItemDataRole.UserRole)
        scanner = dataset.scanners[sid]
        return scanner.subject(subject_id) if subject_id else scanner.subjects[0]

    def load_selected(self) -> None:
        subject = self.selected_subject()
        if subject is None:
            notify_failure(PetiteError("Choose a subject in the list first (open a dataset "
                                       "folder or the sample dataset)."))
            return
        self.load_subject(subject)

    def load_subject(self, subject) -> None:
        """Read the subject's volumes in a worker, then add them as linked layers."""

        def body(_control):
            from napari_petite.io.layers import volume_to_layer_data
            from napari_petite.io.volumes import read_any

            out = []
            for kind in ("low", "full", "truth", "labels"):
                path = subject.files.get(kind)
                if path is None:
                    continue
                volume = read_any(path)
                # the subject's meta.json tells what the files may not (units, SUV factor)
                if kind != "labels":
                    volume.units = volume.units or subject.meta.get("units")
                if volume.extra.get("suv_factor") is None and subject.meta.get("suv_factor"):
                    volume.extra["suv_factor"] = float(subject.meta["suv_factor"])
                data, kwargs, ltype = volume_to_layer_data(
                    volume, name=f"{subject.scanner}/{subject.id} {kind}")
                kwargs["metadata"][ROLE_KEY] = {"scanner": subject.scanner,
                                                "subject": subject.id, "kind": kind}
                if kind == "labels":  # region names for ROI statistics
                    kwargs["metadata"]["label_names"] = subject.meta.get("labels") or {}
                out.append((data, kwargs, ltype))
                yield kind
            return out

        self.status.setText(f"Reading {subject.scanner}/{subject.id}…")
        self._run(Task(body, desc=f"reading {subject.scanner}/{subject.id}",
                       on_done=self._add_layers))

    def _add_layers(self, result) -> None:
        if not isinstance(result, list):
            return
        from napari.experimental import link_layers

        images = []
        limits = None
        for data, kwargs, ltype in result:
            name = kwargs["name"]
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            if ltype == "image":
                if kwargs["metadata"][ROLE_KEY]["kind"] == "full" or limits is None:
                    limits = kwargs["contrast_limits"]
                images.append(self.viewer.add_image(data, **kwargs))
            else:
                layer = self.viewer.add_labels(data, **kwargs)
                layer.visible = False
        for layer in images:
            layer.contrast_limits = limits
            # the low-count scan is the one to read: full and truth are toggles, not on top
            if layer.metadata[ROLE_KEY]["kind"] != "low":
                layer.visible = False
        if len(images) > 1:
            link_layers(images, ("contrast_limits", "gamma", "colormap"))
        if images:
            self.viewer.reset_view()
            self.viewer.layers.selection.active = images[0]
        spacing = " x ".join(f"{float(s):.3g}" for s in images[0].scale) if images else ""
        self.status.setText(f"Loaded {len(result)} volume(s); scale = voxel spacing {spacing} "
                            "mm (z, y, x)." if images else "")

    # -- jobs --------------------------------------------------------------------------------
    def _run(self, task: Task) -> None:
        self._run_task(task, busy="The dock is still busy; wait for the current step.",
                       failed=lambda _: "Failed; see the notification.")

    def _set_busy(self, busy: bool) -> None:
        self.load_button.setEnabled(not busy)
        self.scan_button.setEnabled(not busy)
        self.pairs_button.setEnabled(not busy)
        self.sample_button.setEnabled(not busy)
