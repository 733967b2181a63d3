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
from napari_petite._widgets.layout import scroll_layout
from napari_petite._widgets.metrics_table import MetricsTable
from napari_petite._widgets.model_choice import BASE, ModelChoice, recon_name
from napari_petite._widgets.pacs_send import SendToPacsButton
from napari_petite._widgets.roi_panel import ROIPanel, subject_images
from napari_petite._widgets.state import ROLE_KEY, session_for
from napari_petite._widgets.tasks import Task, TaskDock, notify_failure
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
        self.views = ViewControls(napari_viewer, self.panels, on_grid=self.show_grid,
                                  on_overlay=self.show_overlay,
                                  on_difference=self.show_difference,
                                  on_suv=self._suv_toggled, say=self.status_text)
        self.table = MetricsTable()
        self.roi = ROIPanel(napari_viewer,
                            lambda: subject_images(self.viewer, self.choice.layer(self.low)))
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
        self.status = QLabel("Load a subject in 'Scanner data', then Reconstruct.")
        self.status.setWordWrap(True)
        self.readout = QLabel("")
        self.readout.setToolTip("The values of the panels under the mouse")
        napari_viewer.mouse_move_callbacks.append(self._hover)
        layout = scroll_layout(self)
        layout.addWidget(self.choice)
        layout.addLayout(run_row)
        layout.addWidget(self.views)
        layout.addWidget(self.readout)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.roi)
        layout.addLayout(export_row)
        layout.addWidget(self.send_pacs)
        layout.addWidget(self.status)
        self.viewer.layers.events.inserted.connect(self._suv_new_layer)
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
        """Run the chosen model on the low-count layer in a worker."""
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

        def body(control):
            from napari_petite.training.evaluation import compare_to_full
            from napari_petite.training.inference import Stopped, predict_volume

            model, description = loader()
            try:
                recon = predict_volume(model, low, progress=lambda d, t: holder["task"].emit(
                    (d, t)), should_stop=lambda: control.stopped)
            except Stopped:
                return None
            metrics = {}
            if full is not None:
                yield "metrics"
                metrics = compare_to_full(low, {name: recon}, full, labels=labels, names=names)
            return recon, metrics, description

        task = Task(body, desc="reconstructing", total=1, on_yield=self._progress,
                    on_done=lambda r: self._show_result(r, name, low_layer, full_layer),
                    torch=True)
        holder["task"] = task
        self.status.setText(f"Reconstructing {low_layer.name} with {name}…")
        self._start(task)

    def _labels_for(self, low_layer):
        role = low_layer.metadata.get(ROLE_KEY)
        if not role:
            return None, None
        for layer in self.viewer.layers:
            other = layer.metadata.get(ROLE_KEY, {})
            if (other.get("kind") == "labels" and other.get("subject") == role["subject"]
                    and other.get("scanner") == role["scanner"]
                    and layer.data.shape == low_layer.data.shape):
                meta = None
                dataset = self.session.dataset
                if dataset is not None and role["scanner"] in dataset.scanners:
                    meta = dataset.scanners[role["scanner"]].subject(role["subject"]).meta
                return np.asarray(layer.data), label_names(meta)
        return None, None

    def _progress(self, value) -> None:
        if not self.live:
            return
        if isinstance(value, tuple):
            done, total = value
            pbar = getattr(self.task.worker, "pbar", None)
            if pbar is not None and pbar.total != total:
                pbar.total = total
            self.status.setText(f"Reconstructing: window batch {done}/{total}…")
            self.task.set_progress(done)  # last: it may handle the task's end re-entrantly
        elif value == "metrics":
            self.status.setText("Computing metrics…")

    def _show_result(self, result, name, low_layer, full_layer) -> None:
        if not isinstance(result, tuple):
            if result is None:
                self.status.setText("Stopped; nothing was added.")
            return
        recon, metrics, description = result
        self.recon_layer = self._add_recon(recon, name, description, low_layer, full_layer)
        if self._scan != low_layer.name:  # another scan: its own columns (names, not
            self._scan, self._columns = low_layer.name, {}  # objects: napari hands proxies)
        if metrics:
            self._columns = {LOW_COLUMN: metrics["low"],
                             **{k: v for k, v in self._columns.items() if k != LOW_COLUMN},
                             name: metrics[name]}
            self.table.show_columns(self._columns)
        self.status.setText(f"Reconstructed {low_layer.name} with {description}."
                            f"{self._seen_warning(low_layer, name)}")
        self.show_grid()

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

    def _add_recon(self, recon, name, description, low_layer, full_layer):
        from napari.experimental import link_layers

        from napari_petite.io.layers import PET_COLORMAP

        layer_name = recon_name(name)
        meta = derived_metadata(low_layer, model=description,
                                **{ROLE_KEY: {**low_layer.metadata.get(ROLE_KEY, {}),
                                              "kind": "reconstructed", "model": name,
                                              "scan": low_layer.name}})
        layer = next((lay for lay in self.viewer.layers  # the same model again: its layer
                      if lay.name == layer_name and lay.metadata.get(ROLE_KEY, {}).get(
                          "model") == name), None)
        if layer is not None:  # new data in place (removing a layer costs ~0.6 s of GUI)
            if layer.data.shape == recon.shape:
                layer.data, layer.scale, layer.translate = recon, low_layer.scale, \
                    low_layer.translate
                layer.metadata.clear()
                layer.metadata.update(meta)
                return layer
            self.viewer.layers.remove(layer)
        layer = self.viewer.add_image(
            recon, name=layer_name, scale=low_layer.scale, translate=low_layer.translate,
            units=low_layer.units,
            metadata=meta, colormap=PET_COLORMAP, contrast_limits=low_layer.contrast_limits,
            blending="translucent", visible=False)  # shown by the view that follows
        linked = [lay for lay in (low_layer, full_layer, layer) if lay is not None]
        link_layers(linked, ("contrast_limits", "gamma"))
        return layer

    # -- views -----------------------------------------------------------------------------
    def _trio(self):
        recon = self.recon_layer if self.recon_layer is not None and \
            self.recon_layer.name in self.viewer.layers else None
        return self.choice.layer(self.low), recon, self.choice.layer(self.full)

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

    def show_grid(self) -> None:
        """The panels side by side (napari grid mode)."""
        views.side_by_side(self.viewer, self.panels())

    def show_overlay(self) -> None:
        low, recon, full = self._trio()
        if recon is not None:
            views.overlay(self.viewer, full or low, recon)

    def show_difference(self) -> None:
        _low, recon, full = self._trio()
        if recon is None or full is None:
            notify_failure(ConfigError("The difference needs a reconstruction and a full-count "
                                       "layer; reconstruct first and choose the full layer."))
            return
        views.difference(self.viewer, recon, full, derived_metadata(recon))

    def _hover(self, viewer, event) -> None:
        """One read-out for all panels: each panel's value at the cursor."""
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

    # -- SUV ---------------------------------------------------------------------------------
    def _suv_toggled(self, on: bool) -> None:
        from napari_petite._widgets.units import show_all_in_suv

        changed = show_all_in_suv(self.viewer, on)
        self.status.setText(f"{changed} layer(s) now in {'SUV' if on else 'their file units'}."
                            if changed else "No layer has an SUV factor (DICOM tags or the "
                            "dataset's meta.json give one).")

    def _suv_new_layer(self, event) -> None:
        if self.views.suv.isChecked():
            from napari_petite._widgets.units import show_all_in_suv

            show_all_in_suv(self.viewer, True)

    # -- export ----------------------------------------------------------------------------
    def _recon_or_fail(self):
        if self._trio()[1] is None:
            notify_failure(ConfigError("Nothing to export yet: press Reconstruct first."))
            return None
        return self.recon_layer

    def _export_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export reconstructed volume",
                                              "reconstructed.nii.gz", "NIfTI (*.nii.gz *.nii)")
        if path:
            self.export_nifti(path, overwrite=True)

    def export_nifti(self, path, overwrite: bool = False) -> Path | None:
        """Write the reconstruction as NIfTI (never over an input)."""
        layer = self._recon_or_fail()
        return None if layer is None else exports.nifti(self.viewer, layer, path, overwrite)

    def _dicom_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        folder = QFileDialog.getSaveFileName(self, "New DICOM series folder", "reconstructed")[0]
        if folder:
            self.export_dicom(folder)

    def export_dicom(self, folder, overwrite: bool = False) -> Path | None:
        """Write the reconstruction as a derived DICOM series."""
        layer = self._recon_or_fail()
        out = None if layer is None else exports.dicom(layer, folder, overwrite)
        self.send_pacs.set_folder(out or self.send_pacs.folder)  # Send to PACS offers it
        return out

    def _report_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Report", "report.pdf",
                                              "PDF (*.pdf);;PNG (*.png)")
        if path:
            self.export_report(path, overwrite=True)

    def export_report(self, path, overwrite: bool = False) -> Path | None:
        """Write the report of the scan and every model reconstructed on it."""
        if self._recon_or_fail() is None or self._trio()[0] is None:
            return None
        return exports.report(self.viewer, self.session, self._trio(), self._columns, path,
                              overwrite)

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
            from napari.utils.notifications import show_info

            self.status.setText(f"Exported {result[0]} test subject(s) to {result[1]}.")
            show_info(self.status.text())

    # -- tasks -----------------------------------------------------------------------------
    def _start(self, task: Task) -> None:
        self._run_task(task, busy="Still working; wait or press Stop.",
                       failed=lambda f: f"Failed: {f.message}")

    def stop(self) -> None:
        if self.live:
            self.task.stop()
            self.status.setText("Stopping…")

    def _set_busy(self, busy: bool) -> None:
        for b in (self.run_button, self.export_button, self.dicom_button, self.report_button,
                  self.batch_button):
            b.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
