"""The "Reconstruct & compare" dock: run a model of the session on a low-count scan, look at
the result beside the full-count scan, measure it, export it.

It composes :class:`.model_choice.ModelChoice`, :class:`.metrics_table.MetricsTable` and the
views of :mod:`.views`; measuring and exporting are the library's
(:func:`~napari_petite.training.evaluation.compare_to_full`,
:func:`~napari_petite.training.evaluation.export_subjects`). Each model's reconstruction is
its own layer ("reconstructed · <model>") with the input's scale and NIfTI geometry but no
source path, so it can be saved anywhere except over the file it came from, and the metrics
table keeps one column per model reconstructed on the same scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from napari_petite._widgets import exports, views
from napari_petite._widgets.comparison import DIFFERENCE, GRID, OVERLAY, Comparison
from napari_petite._widgets.crosshair import Crosshair
from napari_petite._widgets.fidelity_panel import FidelityPanel
from napari_petite._widgets.layout import scroll_layout
from napari_petite._widgets.metrics_table import MetricsTable
from napari_petite._widgets.model_choice import BASE, ModelChoice, recon_name
from napari_petite._widgets.pacs_send import SendToPacsButton
from napari_petite._widgets.roi_panel import ROIPanel, subject_images
from napari_petite._widgets.state import ROLE_KEY, session_for, short_name
from napari_petite._widgets.steps import Steps
from napari_petite._widgets.tasks import Task, TaskDock, notify_failure
from napari_petite._widgets.units import unit_label
from napari_petite._widgets.view_controls import ViewControls
from napari_petite.errors import ConfigError, InputError, PetiteError
from napari_petite.io.layers import DISPLAY_SCALE
from napari_petite.training.evaluation import label_names

LOW_COLUMN = "low-count"


def derived_metadata(layer, **extra) -> dict:
    """Metadata of a layer computed from ``layer``: same geometry, no source path."""
    meta = {k: v for k, v in layer.metadata.items() if k in
            ("affine", "nifti_header", "units", "spacing", "suv_factor", "suv_reason", "dicom",
             DISPLAY_SCALE, ROLE_KEY)}
    meta["source_path"] = None
    meta.update(extra)
    return meta


def use_cores(training: bool) -> None:
    """Torch's threads for an inference: every core, as ``petite predict`` uses, unless a
    run trains beside it (then it keeps the training's share; the worker threads run below
    the GUI's priority either way, see :func:`.tasks.lower_priority`)."""
    import os

    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores - 1) if training else cores)


def _buttons(*specs) -> tuple[QHBoxLayout, list[QPushButton]]:
    row, out = QHBoxLayout(), []
    for text, slot, tip in specs:
        button = QPushButton(text)
        button.clicked.connect(slot)
        button.setToolTip(tip)
        row.addWidget(button)
        out.append(button)
    return row, out


class CompareDock(TaskDock, QWidget):
    """Reconstruction, side-by-side / overlay / difference views, metrics and export."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.task: Task | None = None
        self.recon_layer = None
        self._scan: str | None = None  # the low-count layer the table's columns belong to
        self._columns: dict[str, dict] = {}
        self.choice = ModelChoice(napari_viewer, self.session)
        run_row, (self.run_button, self.stop_button) = _buttons(
            ("Reconstruct", self.reconstruct, "Run the chosen model on the low-count scan"),
            ("Stop", self.stop, "Stop between two windows; nothing is added"))
        self.status = QLabel("Load a subject in 'Scanner data', then Reconstruct.")
        self.status.setWordWrap(True)
        self.comparison = Comparison(napari_viewer, say=self.status_text)
        self.crosshair = Crosshair(self.comparison)
        self.views = ViewControls(self.comparison, on_grid=self.show_grid,
                                  on_overlay=self.show_overlay,
                                  on_difference=self.show_difference,
                                  on_suv=self._suv_toggled)
        self.table = MetricsTable()
        self.roi = ROIPanel(napari_viewer,
                            lambda: subject_images(self.viewer, self.choice.layer(self.low)))
        self.fidelity = FidelityPanel(self.check_fidelity)
        export_row, (self.export_button, self.dicom_button, self.report_button,
                     self.batch_button) = _buttons(
            ("Export NIfTI…", self._export_dialog, "the reconstruction with the scan's geometry"),
            ("Export DICOM…", self._dicom_dialog,
             "a derived PET series for PACS (the scan must come from DICOM)"),
            ("Report…", self._report_dialog,
             "slices, colour bars, metrics and details on one page (PNG or PDF)"),
            ("Batch: test subjects…", self._batch_dialog,
             "reconstruct every test subject of the target into a folder with metrics.json"))
        self.send_pacs = SendToPacsButton()
        self.readout = QLabel("")
        self.readout.setWordWrap(True)
        self.readout.setToolTip("The values of the panels under the mouse; click to mark a "
                                "point in every panel")
        napari_viewer.mouse_move_callbacks.append(self._hover)
        layout = scroll_layout(self)
        layout.addWidget(self.choice)
        layout.addLayout(run_row)
        layout.addWidget(self.views)
        layout.addWidget(self.readout)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.roi)
        layout.addWidget(self.fidelity)
        layout.addLayout(export_row)
        layout.addWidget(self.send_pacs)
        layout.addWidget(self.status)
        self.viewer.layers.events.inserted.connect(self._suv_new_layer)
        self.choice.scans_changed.connect(self._scans_changed)
        # a check belongs to one model and one split: another choice clears it
        self.choice.model.currentIndexChanged.connect(self._fidelity_follows)
        for signal in (self.session.models_changed, self.session.dataset_changed,
                       self.session.selection_changed, self.session.base_changed):
            signal.connect(self._fidelity_follows)
        self._fidelity_key: tuple | None = None
        self.side_task: Task | None = None  # difference maps and reports, beside self.task
        self._last_folder: Path | None = None
        self._suv_steps = Steps(self)
        self._set_busy(False)
        self.stop_on_destroy()

    # shortcuts the tests and the benchmarks use
    @property
    def low(self):
        return self.choice.low

    @property
    def full(self):
        return self.choice.full

    @property
    def model(self):
        return self.choice.model

    # -- reconstruct -----------------------------------------------------------------------
    def reconstruct(self) -> None:
        """Run the chosen model on the low-count layer in a worker: the reconstruction is
        shown as soon as it exists, its metrics follow when computed."""
        low_layer, full_layer = self.choice.layer(self.low), self.choice.layer(self.full)
        try:
            if low_layer is None:
                raise InputError("Choose a low-count image layer (load a subject in 'Scanner "
                                 "data' or open a NIfTI file).")
            if full_layer is not None and full_layer.data.shape != low_layer.data.shape:
                raise InputError(f"{full_layer.name} has shape {full_layer.data.shape} but "
                                 f"{low_layer.name} has {low_layer.data.shape}; choose the "
                                 "matching full-count layer or none.")
            name, loader = self.choice.loader()
        except PetiteError as err:
            notify_failure(err)
            return
        low = np.asarray(low_layer.data, dtype=np.float32)
        full = None if full_layer is None else np.asarray(full_layer.data, dtype=np.float32)
        labels, names = self._labels_for(low_layer)
        holder: dict = {}
        training = self.session.running is not None

        def body(control):
            from napari_petite.io.layers import robust_limits
            from napari_petite.training.evaluation import compare_to_full
            from napari_petite.training.inference import Stopped, predict_volume

            model, description = loader()
            use_cores(training)
            try:
                recon = predict_volume(model, low, progress=lambda d, t: holder["task"].emit(
                    (d, t)), should_stop=lambda: control.stopped)
            except Stopped:
                return None
            yield ("recon", recon, description, robust_limits(recon))
            if full is None or control.stopped:
                return {}
            return compare_to_full(low, {name: recon}, full, labels=labels, names=names)

        task = Task(body, desc="reconstructing", total=1, on_yield=lambda v: self._progress(
            v, name, low_layer, full_layer), on_done=lambda r: self._metrics_done(
                r, name, low_layer), torch=True)
        holder["task"] = task
        self.status.setText(f"Reconstructing {low_layer.name} with {name}…")
        self._start(task)

    def _labels_for(self, low_layer):
        role = low_layer.metadata.get(ROLE_KEY)
        if not role or not role.get("subject"):
            return None, None
        for layer in self.viewer.layers:
            other = layer.metadata.get(ROLE_KEY, {})
            if (other.get("kind") == "labels" and other.get("subject") == role["subject"]
                    and other.get("scanner") == role.get("scanner")
                    and layer.data.shape == low_layer.data.shape):
                meta = None
                dataset = self.session.dataset
                if dataset is not None and role.get("scanner") in dataset.scanners:
                    meta = dataset.scanners[role["scanner"]].subject(role["subject"]).meta
                return np.asarray(layer.data), label_names(meta)
        return None, None

    def _progress(self, value, name, low_layer, full_layer) -> None:
        if isinstance(value, tuple) and value and value[0] == "recon":
            _, recon, description, limits = value
            self._show_result(recon, name, description, limits, low_layer, full_layer)
            return
        if not self.live or not isinstance(value, tuple):
            return
        done, total = value
        pbar = getattr(self.task.worker, "pbar", None)
        if pbar is not None and pbar.total != total:
            pbar.total = total
        self.status.setText(f"Reconstructing: {100 * done // max(total, 1)} % done…")
        self.task.set_progress(done)  # last: it may handle the task's end re-entrantly

    def _show_result(self, recon, name, description, limits, low_layer, full_layer) -> None:
        """The reconstruction's layer joins the panels at once; metrics follow."""
        self.recon_layer = self._add_recon(recon, name, description, limits, low_layer)
        self._scan_columns(low_layer)
        self.status.setText(f"Reconstructed {low_layer.name} with {description}"
                            f"{'; measuring it against full count…' if full_layer else '.'}"
                            f"{self._seen_warning(low_layer, name)}")
        self.show_grid()

    def _metrics_done(self, metrics, name, low_layer) -> None:
        if metrics is None:
            self.status.setText("Stopped; nothing was added.")
            return
        if not isinstance(metrics, dict) or not metrics:
            return
        self._scan_columns(low_layer)
        self._columns = {LOW_COLUMN: metrics["low"],
                         **{k: v for k, v in self._columns.items() if k != LOW_COLUMN},
                         name: metrics[name]}
        self.table.show_columns(self._columns)
        text = self.status.text().replace("; measuring it against full count…", ".")
        self.status.setText(text)

    def _scan_columns(self, low_layer) -> None:
        """The table's columns belong to one scan: another scan starts them afresh (names,
        not objects: napari hands proxies)."""
        if self._scan != low_layer.name:
            self._scan, self._columns = low_layer.name, {}
            self.table.show_columns({})

    def _seen_warning(self, low_layer, name: str) -> str:
        """A warning when the scan is one the model trained or picked its step on."""
        role = low_layer.metadata.get(ROLE_KEY, {})
        trained = self.session.model_named(name)
        split = self.session.split
        if trained is None or split is None or role.get("scanner") != self.session.target:
            return ""
        subject = role.get("subject")
        if subject in split.train:
            use = "trained on"
        elif subject in split.val:
            use = "picked its best step on"
        else:
            return ""
        return (f" ⚠ {subject} is a subject this model {use}: its numbers flatter the model; "
                "judge it on a test subject.")

    def _add_recon(self, recon, name, description, limits, low_layer):
        from napari_petite.io.layers import AUTO_LIMITS, PET_COLORMAP

        scale = float(low_layer.metadata.get(DISPLAY_SCALE) or 1.0)  # in the scan's units
        meta = derived_metadata(low_layer, model=description,
                                **{AUTO_LIMITS: tuple(v / scale for v in limits),
                                   ROLE_KEY: {**low_layer.metadata.get(ROLE_KEY, {}),
                                              "kind": "reconstructed", "model": name,
                                              "scan": low_layer.name}})
        layer_name = recon_name(name)
        layer = next((lay for lay in self.viewer.layers  # the same model again: its layer
                      if lay.name == layer_name and lay.metadata.get(ROLE_KEY, {}).get(
                          "model") == name), None)
        with self.comparison.owning():
            if layer is not None:  # new data in place (removing a layer costs ~0.6 s of GUI)
                if layer.data.shape == recon.shape:
                    layer.data, layer.scale, layer.translate = recon, low_layer.scale, \
                        low_layer.translate
                    layer.metadata.clear()
                    layer.metadata.update(meta)
                    return layer
                self.viewer.layers.remove(layer)
            return self.viewer.add_image(
                recon, name=layer_name, scale=low_layer.scale, translate=low_layer.translate,
                units=low_layer.units, metadata=meta, colormap=PET_COLORMAP,
                contrast_limits=low_layer.contrast_limits, blending="translucent",
                visible=False)  # shown by the view that follows

    # -- views -----------------------------------------------------------------------------
    def _trio(self):
        recon = self.recon_layer if self.recon_layer is not None and \
            self.recon_layer.name in self.viewer.layers else None
        low = self.choice.layer(self.low)
        if recon is not None and (low is None or recon.metadata.get(ROLE_KEY, {}).get(
                "scan") != low.name):
            recon = None  # a reconstruction of another scan is not this scan's panel
        return low, recon, self.choice.layer(self.full)

    def _base_beside(self, low, recon):
        """The base model's reconstruction of the same scan, when ``recon`` is an adapted
        model's: base vs adapted is the comparison a reader wants next to each other."""
        if low is None or recon is None or \
                recon.metadata.get(ROLE_KEY, {}).get("model") == BASE:
            return None
        return next((lay for lay in self.viewer.layers if lay is not recon
                     and lay.metadata.get(ROLE_KEY, {}).get("kind") == "reconstructed"
                     and lay.metadata[ROLE_KEY].get("model") == BASE
                     and lay.metadata[ROLE_KEY].get("scan") == low.name
                     and lay.data.shape == low.data.shape), None)

    def panels(self) -> list:
        """What *Side by side* shows: low | base | adapted | full when the base's
        reconstruction of the scan exists beside an adapted one, else low | recon | full."""
        low, recon, full = self._trio()
        base = self._base_beside(low, recon)
        return [low, recon, full] if base is None else [low, base, recon, full]

    def _scans_changed(self) -> None:
        """Another low- or full-count scan: the panels follow, and nothing measured on the
        previous scan stays on screen."""
        low = self.choice.layer(self.low)
        if low is None or self._scan != low.name:
            self._scan, self._columns = (low.name if low is not None else None), {}
            self.table.show_columns({})
            self.roi.clear()
        self.crosshair.clear()
        self.comparison.set_panels(self.panels())
        if low is not None:  # from the first scan on, every view is the radiological one
            self.comparison.show()

    def show_grid(self) -> None:
        """The panels side by side (napari grid mode), drawn by the comparison."""
        self.comparison.set_panels(self.panels())
        self.comparison.show(GRID)
        self.views.mode_changed(GRID)

    def show_overlay(self) -> None:
        _low, recon, _full = self._trio()
        if recon is None:
            notify_failure(ConfigError("The overlay needs a reconstruction; press "
                                       "Reconstruct first."))
            return
        self.comparison.set_panels(self.panels())
        self.comparison.show(OVERLAY)
        self.views.mode_changed(OVERLAY)

    def show_difference(self) -> None:
        """reconstructed − full, computed in a worker, then shown on its own."""
        _low, recon, full = self._trio()
        if recon is None or full is None:
            notify_failure(ConfigError("The difference needs a reconstruction and a full-count "
                                       "layer; reconstruct first and choose the full layer."))
            return
        if self.side_task is not None and self.side_task.running:
            return
        recon_data, full_data = recon.data, full.data

        def body(_control):
            yield "computing"
            return views.difference_volume(recon_data, full_data)

        def done(result):
            if not isinstance(result, tuple) or recon.name not in self.viewer.layers:
                return
            diff, lim = result
            with self.comparison.owning():
                layer = views.add_difference(self.viewer, diff, lim, recon,
                                             derived_metadata(recon))
            self.comparison.set_panels(self.panels())
            self.comparison.difference = layer
            self.comparison.show(DIFFERENCE)
            self.views.mode_changed(DIFFERENCE)
            self.status.setText(f"Difference {recon.name} − full count, ±{lim:g} "
                                f"{unit_label(recon)} at the ends of the bar.")

        self.status.setText("Computing the difference…")
        self.side_task = Task(body, desc="difference", on_done=done).start()

    def _hover(self, viewer, event) -> None:
        """One read-out for all panels: each panel's value at the cursor, with its unit."""
        from napari_petite._widgets.state import short_name

        panels = self.panels()
        if panels[0] is None:
            return
        names = ["low"] + [short_name(lay.metadata.get(ROLE_KEY, {}).get("model", ""))
                           or "reconstructed" if lay is not None else ""
                           for lay in panels[1:-1]] + ["full"]
        self.readout.setText(views.readout(list(zip(names, panels, strict=True)),
                                           viewer.cursor.position))

    def status_text(self, text: str) -> None:
        self.status.setText(text)

    @property
    def suv(self):
        return self.views.suv

    @property
    def settled(self) -> bool:
        """Nothing is computing or waiting to be drawn: the screen shows what was asked."""
        return self.is_idle and self.comparison.settled and self._suv_steps.idle and \
            self.crosshair.settled and (self.side_task is None or not self.side_task.running)

    # -- SUV ---------------------------------------------------------------------------------
    def _suv_toggled(self, on: bool) -> None:
        """Every layer that can into SUV (or back), one layer per turn of the event loop;
        then the window, the units, the crosshair values and the read-out follow."""
        from napari_petite._widgets.units import suv_switches

        switches = suv_switches(self.viewer, on)

        def after() -> None:
            self.comparison.units_changed()
            if self.crosshair.position is not None:
                self.crosshair.set(self.crosshair.position)
            self._hover(self.viewer, None)  # the read-out in the new units at once
            self.status.setText(
                f"{len(switches)} layer(s) now in {'SUV' if on else 'their file units'}."
                if switches else "No layer has an SUV factor (DICOM tags or the dataset's "
                "meta.json give one).")

        # its own queue: a redraw asked for meanwhile must not drop a layer's conversion
        self._suv_steps.run([self.comparison.owned(s) for s in switches] + [after])

    def _suv_new_layer(self, event) -> None:
        if self.views.suv.isChecked():
            from napari_petite._widgets.units import show_all_in_suv

            with self.comparison.owning():
                show_all_in_suv(self.viewer, True)

    # -- export ----------------------------------------------------------------------------
    def _recon_or_fail(self):
        if self._trio()[1] is None:
            notify_failure(ConfigError("Nothing to export yet: press Reconstruct first."))
            return None
        return self.recon_layer

    def _suggested(self, what: str, suffix: str) -> str:
        """A save dialog's starting path: the folder of the last export (else the home
        folder) and a name saying which scan and model it holds."""
        layer = self.recon_layer
        role = layer.metadata.get(ROLE_KEY, {}) if layer is not None else {}
        scan = (f"{role.get('scanner', '')}-{role.get('subject', '')}".strip("-")
                or role.get("scan") or "scan")
        model = short_name(role.get("model") or "model")
        stem = f"{scan} {what} {model}".replace("/", "-").replace(" ", "_")
        folder = self._last_folder or Path.home()
        return str(folder / f"{stem}{suffix}")

    def _chosen(self, path: str) -> str:
        if path:
            self._last_folder = Path(path).parent
        return path

    def _export_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export reconstructed volume",
                                              self._suggested("reconstructed", ".nii.gz"),
                                              "NIfTI (*.nii.gz *.nii)")
        if self._chosen(path):
            self.export_nifti(path, overwrite=True)

    def export_nifti(self, path, overwrite: bool = False) -> Task | None:
        """Write the reconstruction as NIfTI (never over an input), in a worker; the task's
        ``result`` is the path written."""
        layer = self._recon_or_fail()
        return None if layer is None else self._write(
            "Reconstruction", exports.nifti_job(self.viewer, layer, path, overwrite))

    def _write(self, what: str, write, after=None) -> Task | None:
        """Run ``write`` (an exports job) in a worker beside the dock's main task; ``after``
        gets the path written."""
        if self.side_task is not None and self.side_task.running:
            notify_failure(PetiteError("A report, an export or a difference is still being "
                                       "made; wait a moment."))
            return None

        def body(_control):
            yield "writing"
            return write()

        def done(result):
            if isinstance(result, Path):
                self.status.setText(f"{what} written: {result.name} (in {result.parent}).")
                if after is not None:
                    after(result)

        self.status.setText(f"Writing: {what.lower()}…")
        self.side_task = Task(body, desc=what, on_done=done).start()
        return self.side_task

    def _dicom_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        folder = QFileDialog.getSaveFileName(self, "New DICOM series folder",
                                             self._suggested("reconstructed", ""))[0]
        if self._chosen(folder):
            self.export_dicom(folder)

    def export_dicom(self, folder, overwrite: bool = False) -> Task | None:
        """Write the reconstruction as a derived DICOM series, in a worker."""
        layer = self._recon_or_fail()
        return None if layer is None else self._write(
            "DICOM series", exports.dicom_job(layer, folder, overwrite),
            after=self.send_pacs.set_folder)  # Send to PACS offers what was written

    def _report_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Report", self._suggested("report", ".pdf"),
                                              "PDF (*.pdf);;PNG (*.png)")
        if self._chosen(path):
            self.export_report(path, overwrite=True)

    def export_report(self, path, overwrite: bool = False) -> Task | None:
        """Write the report of the scan and every model reconstructed on it, drawn in a
        worker; the returned task's ``result`` is the written path."""
        if self._recon_or_fail() is None or self._trio()[0] is None:
            return None
        return self._write("Report", exports.report_job(
            self.viewer, self.session, self._trio(), self._columns, self.roi.results, path,
            overwrite, fidelity=self.current_fidelity()))

    def _batch_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the test-subject exports")
        if folder:
            self.batch_export(folder)

    def batch_export(self, folder) -> None:
        """Reconstruct every test subject of the target scanner into ``folder`` (a worker)."""
        scanner, split = self.session.target_scanner(), self.session.split
        try:
            if scanner is None or split is None or not split.test:
                raise ConfigError("Choose a target scanner with test subjects in 'Scanner "
                                  "data' first.")
            name, loader = self.choice.loader()
        except PetiteError as err:
            notify_failure(err)
            return
        ids, holder = list(split.test), {}

        def body(control):
            from napari_petite.training.evaluation import export_subjects

            model, description = loader()
            out = export_subjects(model, scanner, ids, folder, description=description,
                                  should_stop=lambda: control.stopped,
                                  on_subject=lambda k, n: holder["task"].emit((k, n)))
            yield "done"
            return None if out is None else (len(ids), out)

        task = Task(body, desc=f"exporting {scanner.id} test subjects", total=len(ids),
                    on_yield=self._batch_progress, on_done=self._batch_done, torch=True)
        holder["task"] = task
        self.status.setText(f"Exporting {len(ids)} test subject(s) of {scanner.id} with "
                            f"{name}…")
        self._start(task)

    def _batch_progress(self, value) -> None:
        if self.live and isinstance(value, tuple):
            self.status.setText(f"Exported {value[0]}/{value[1]} test subjects…")
            self.task.set_progress(value[0])

    def _batch_done(self, result) -> None:
        if result is None:
            self.status.setText("Stopped; the volumes exported so far are kept, without a "
                                "metrics.json.")
        elif isinstance(result, tuple):
            self.status.setText(f"Exported {result[0]} test subject(s) to {result[1]}.")

    # -- fidelity check --------------------------------------------------------------------
    def _fidelity_choice(self) -> tuple:
        """What a check depends on: the model, the target, its validation subjects, the base."""
        split = self.session.split
        return (self.choice.model.currentData(), self.session.target,
                tuple(split.val) if split is not None else (), self.session.base_path)

    def _fidelity_follows(self, *_) -> None:
        if self.fidelity.check is not None and self._fidelity_choice() != self._fidelity_key:
            self.fidelity.clear("The model, the target or its validation subjects changed "
                                "since the last check: press Check fidelity again.")

    def current_fidelity(self):
        """The check shown, while it still belongs to the chosen model and split (else
        None): the report carries only a check of what it reports."""
        check = self.fidelity.check
        return check if check is not None and self._fidelity_choice() == self._fidelity_key \
            else None

    def check_fidelity(self) -> None:
        """Reconstruct the target's validation subjects with the chosen model (and the base,
        when the choice is an adapted model) in a worker, and show how faithfully each, and
        the low-count input, keeps lesion, region and SUVR values (``training/
        fidelity_check.py``)."""
        from napari_petite.training.fidelity_check import ADAPTED
        from napari_petite.training.fidelity_check import BASE as BASE_ROLE

        scanner, split = self.session.target_scanner(), self.session.split
        try:
            if scanner is None or split is None:
                raise ConfigError("Choose a target scanner in 'Scanner data' first: the check "
                                  "runs on its validation subjects.")
            if not split.val:
                raise ConfigError(f"{scanner.id} has no validation subject; give the split at "
                                  "least one in 'Scanner data'.")
            name, loader = self.choice.loader()
            loaders = {name: (BASE_ROLE if name == BASE else ADAPTED, loader)}
            if name != BASE and self.session.base_path is not None:
                loaders = {BASE: (BASE_ROLE, self.choice.loader_for(BASE)[1]), **loaders}
        except PetiteError as err:
            notify_failure(err)
            return
        ids, key, holder = list(split.val), self._fidelity_choice(), {}
        training = self.session.running is not None

        def body(control):
            from napari_petite.training.fidelity_check import CheckStopped, check_models

            yield (0, len(ids))
            models = {}
            for label, (role, load) in loaders.items():
                model, _ = load()  # named as the metrics table names it
                models[short_name(label)] = (role, model)
            use_cores(training)
            try:
                return check_models(models, scanner, ids, should_stop=lambda: control.stopped,
                                    on_subject=lambda k, n: holder["task"].emit((k, n)))
            except CheckStopped:
                return None

        def progress(value) -> None:
            if self.live and isinstance(value, tuple):
                self.status.setText(f"Checking fidelity: {value[0]} of {value[1]} validation "
                                    f"subject(s) measured…")
                self.task.set_progress(value[0])

        def done(result) -> None:
            if result is None:
                self.status.setText("Fidelity check stopped; nothing was measured.")
                return
            self._fidelity_key = key
            self.fidelity.show_check(result)
            self.status.setText(f"Fidelity checked. {result.key_sentence()}.")

        task = Task(body, desc="fidelity check", total=len(ids), on_yield=progress,
                    on_done=done, torch=True)
        holder["task"] = task
        self.status.setText(f"Checking {name} on {len(ids)} validation subject(s) of "
                            f"{scanner.id}…")
        self._start(task)

    # -- tasks -----------------------------------------------------------------------------
    def _tasks(self) -> tuple[Task | None, ...]:
        return (self.task, self.side_task, self.send_pacs.task)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Also drop the drawing still waiting: its widgets are going away."""
        for steps in (self.comparison.steps, self.crosshair.steps, self._suv_steps):
            steps.stop()
        super().shutdown(timeout)

    def _start(self, task: Task) -> None:
        self._run_task(task, busy="Still working; wait or press Stop.",
                       failed=lambda f: f"Failed: {f.message}")

    def stop(self) -> None:
        if self.live:
            self.task.stop()
            self.status.setText("Stopping…")

    def _set_busy(self, busy: bool) -> None:
        for b in (self.run_button, self.export_button, self.dicom_button, self.report_button,
                  self.batch_button, self.fidelity.button):
            b.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
