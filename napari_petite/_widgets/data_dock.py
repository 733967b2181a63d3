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
    QMenu,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from napari_petite._widgets import views
from napari_petite._widgets.first_run import ReaderChoice, SampleOffer
from napari_petite._widgets.layout import scroll_layout
from napari_petite._widgets.pacs_open import OpenFromPacsButton
from napari_petite._widgets.split_form import SplitForm
from napari_petite._widgets.state import ROLE_KEY, session_for
from napari_petite._widgets.steps import Steps
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
        self.adding = Steps(self)  # layers are added one per turn of the event loop
        self.reader_choice = ReaderChoice()
        self.sample_offer = SampleOffer(SAMPLE_SCANNERS, SAMPLE_SUBJECTS,
                                        on_start=self.open_sample, on_browse=self._browse)
        self.sample_offer.setVisible(False)
        layout = scroll_layout(self)
        layout.addWidget(self.sample_offer)
        layout.addLayout(self._folder_row())
        layout.addWidget(self._subject_tree(), 1)
        layout.addWidget(self.profile)
        layout.addWidget(self.problems)
        self._scan_buttons(layout)
        layout.addWidget(self.split_form)
        layout.addWidget(self.status)
        layout.addWidget(self.reader_choice)
        self._set_busy(False)
        self.session.run_changed.connect(self._run_changed)
        self.stop_on_destroy()

    def _folder_row(self) -> QHBoxLayout:
        """Dataset folder, Browse… and Sample dataset."""
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("dataset folder (<root>/<scanner>/<subject>/)")
        self.folder.returnPressed.connect(self._open_typed)
        self.browse_button = browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.sample_button = QPushButton("Sample dataset")
        self.sample_button.setToolTip(
            f"Reopen the sample dataset (scanners {', '.join(SAMPLE_SCANNERS)}, "
            f"{SAMPLE_SUBJECTS} people each), or say what it is and offer to simulate it")
        self.sample_button.clicked.connect(self.offer_sample)
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
        menu = QMenu(self.scan_button)
        menu.addAction("NIfTI or ECAT 7 file…", self._nifti_dialog)
        menu.addAction("DICOM series folder…", self._dicom_dialog)
        self.scan_button.setMenu(menu)
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
            self.open_dataset_later(folder)

    def _open_typed(self) -> None:
        if self.folder.text().strip():
            self.open_dataset_later(self.folder.text().strip())

    def open_dataset(self, root) -> bool:
        """Discover ``root`` and list it at once (scripts and tests); problems are listed, not
        fatal. True when opened. The dock's own buttons use :meth:`open_dataset_later`."""
        from napari_petite.io.dataset import discover

        try:
            dataset = discover(root, strict=False)
        except PetiteError as err:
            notify_failure(err)
            return False
        self._show_dataset(dataset)
        return True

    def open_dataset_later(self, root) -> None:
        """Discover ``root`` in a worker (it reads every subject's headers), then list it."""
        def body(_control):
            from napari_petite.io.dataset import discover

            yield "reading"
            return discover(root, strict=False)

        self.status.setText(f"Reading the dataset {Path(root).name}…")
        self._run(Task(body, desc="reading the dataset", on_done=lambda d: (
            self._show_dataset(d) if d is not None and hasattr(d, "scanners") else None)))

    def _show_dataset(self, dataset) -> None:
        self.folder.setText(str(dataset.root))
        self._fill(dataset)
        self.session.set_dataset(dataset)
        self._update_split()
        n = sum(len(s.subjects) for s in dataset.scanners.values())
        self.status.setText(f"Opened {dataset.root.name}: {len(dataset.scanners)} scanner(s), "
                            f"{n} subject(s). Choose a subject and load it, or go on to "
                            "'Fine-tune'.")

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

    def offer_sample(self) -> None:
        """Open the cached sample dataset; the first time, say what it is and ask before
        simulating it (the first-run panel)."""
        folder = sample_dataset_dir()
        if folder.is_dir():
            self.open_dataset_later(folder)
            return
        self.sample_offer.setVisible(True)
        self.status.setText("The sample data is not on this computer yet: see above.")

    def open_sample(self) -> None:
        """Open the cached sample dataset, simulating it in a worker the first time, with
        its progress and the time left measured as it goes."""
        folder = sample_dataset_dir()
        if folder.is_dir():
            self.open_dataset(folder)
            return
        offer = self.sample_offer
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
                offer.advance(*value)
                self.status.setText(f"Simulating the sample data: {value[0]} of "
                                    f"{offer.total} people ({offer.eta.text()})…")
                self.task.set_progress(value[0])

        def done(result):
            if isinstance(result, Path):
                offer.setVisible(False)
                self.open_dataset_later(result)
            else:
                offer.failed()

        offer.setVisible(True)
        offer.begin()
        self.status.setText(f"Simulating the sample data: 0 of {offer.total} people "
                            f"({offer.eta.text()})…")
        task = Task(body, desc="simulating the sample data", total=offer.total,
                    on_yield=progress, on_done=done)
        holder["task"] = task
        self._run(task)

    # -- one scan ----------------------------------------------------------------------------
    def _nifti_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "NIfTI, ECAT 7 or DICOM file", "",
            "NIfTI (*.nii *.nii.gz);;ECAT 7 (*.v);;DICOM (*.dcm);;all (*)")
        if path:
            self.open_scan(path)

    def _dicom_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "DICOM series folder")
        if path:
            self.open_scan(path)

    def open_scan(self, path, series: str | None = None) -> None:
        """Open one scan as a layer, read in a worker; a DICOM folder of several PET series
        asks which one (the folder is listed in the worker too: a series of hundreds of
        files takes seconds to list)."""
        def body(_control):
            from napari_petite.io.dicom import is_dicom_path, list_series
            from napari_petite.io.layers import volume_to_layer_data
            from napari_petite.io.volumes import read_any

            yield "reading"
            if series is None and is_dicom_path(path) and Path(path).is_dir():
                pets = [s for s in list_series(path) if s.modality == "PT"]
                if len(pets) > 1:
                    return ("choose", pets)
            data, kwargs, kind = volume_to_layer_data(read_any(path, series=series))
            kwargs["metadata"][ROLE_KEY] = {"kind": "low"}  # what a scan is opened for
            return [(data, kwargs, kind)]

        def done(result):
            if isinstance(result, tuple) and result[0] == "choose":
                chosen = self._choose_series(result[1])
                if chosen is not None:
                    self.open_scan(path, chosen)
                else:
                    self.status.setText("No series chosen; nothing was opened.")
                return
            self._add_layers(result)

        self.status.setText(f"Reading {Path(path).name}…")
        self._run(Task(body, desc=f"reading {Path(path).name}", on_done=done))

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
        """Add the volumes read by a worker, one layer per turn of the event loop (each
        addition costs a repaint). Scans of one subject start with one window (the
        full-count one's); the comparison in 'Reconstruct & compare' keeps its panels on
        one window from then on (no colormap is linked: an overlay recolours only its own
        two layers)."""
        if not isinstance(result, list):
            return
        from napari.layers import Image, Labels

        added: list = []
        limits = next((kw["contrast_limits"] for _, kw, t in result if t == "image"
                       and kw["metadata"][ROLE_KEY]["kind"] == "full"),
                      next((kw["contrast_limits"] for _, kw, t in result if t == "image"),
                           None))

        def add(data, kwargs, ltype) -> None:
            name = kwargs["name"]
            old = next((lay for lay in self.viewer.layers if lay.name == name), None)
            if old is not None and old.data.shape == data.shape and isinstance(
                    old, Image if ltype == "image" else Labels):  # read again: new data in
                # place (removing a layer and adding it again costs over a second)
                old.data = data
                old.metadata.clear()
                old.metadata.update(kwargs["metadata"])
                old.scale = kwargs["scale"]
                if ltype == "image":
                    old.contrast_limits = limits
                    added.append(old)
                return
            if old is not None:
                self.viewer.layers.remove(old)
            with views.unselected(self.viewer):  # the first scan is selected at the end
                if ltype == "image":
                    # the low-count scan is the one to read: full and truth are toggles
                    kwargs = {**kwargs, "contrast_limits": limits,
                              "visible": kwargs["metadata"][ROLE_KEY]["kind"] == "low"}
                    added.append(self.viewer.add_image(data, **kwargs))
                else:
                    self.viewer.add_labels(data, **kwargs, visible=False)

        def finish() -> None:
            images = [lay for lay in added if lay in self.viewer.layers]
            if images:
                self.viewer.reset_view()
                self.viewer.layers.selection.active = images[0]
            spacing = " x ".join(f"{float(s):.3g}" for s in images[0].scale) if images else ""
            self.status.setText(f"Loaded {len(result)} volume(s); scale = voxel spacing "
                                f"{spacing} mm (z, y, x)." if images else "")

        self.adding.run([lambda item=item: add(*item) for item in result] + [finish])

    def shutdown(self, timeout: float = 30.0) -> None:
        self.adding.stop()  # layers still to add would land in a closing viewer
        super().shutdown(timeout)

    @property
    def is_idle(self) -> bool:
        """No worker runs and every layer read has been added."""
        return TaskDock.is_idle.fget(self) and self.adding.idle

    # -- jobs --------------------------------------------------------------------------------
    def _run(self, task: Task) -> None:
        def failed(_failure) -> str:
            if self.sample_offer.bar.isVisible():  # the offer stands again
                self.sample_offer.failed()
            return "Failed; see the notification."

        self._run_task(task, busy="The dock is still busy; wait for the current step.",
                       failed=failed)

    def _set_busy(self, busy: bool) -> None:
        training = self.session.running is not None
        self.load_button.setEnabled(not busy)
        self.scan_button.setEnabled(not busy)
        for w in (self.pairs_button, self.sample_button):
            w.setEnabled(not busy and not training)

    def _run_changed(self) -> None:
        """While a run trains, what it trains on cannot change under it: the dataset, the
        scanners, the split and the target's subjects are locked (looking at subjects is
        not)."""
        training = self.session.running is not None
        for w in (self.folder, self.browse_button, self.split_form):
            w.setEnabled(not training)
        self._set_busy(not self.is_idle)
        self.split_form.setToolTip("Locked while a run trains on these subjects; stop it to "
                                   "change them." if training else "")
