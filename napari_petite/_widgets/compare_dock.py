"""The "Reconstruct & compare" dock: run the base or adapted model on a low-count layer,
look at the result beside the full-count image, measure it, and export it.

The "reconstructed" layer gets the input layer's scale and NIfTI geometry (affine, header,
units) but no source path, so it can be saved anywhere except over the file it came from.
Inference and export run in workers with progress in napari's activity dock; Stop takes
effect between sliding windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_petite._widgets.data_dock import ROLE_KEY
from napari_petite._widgets.jobs import Job, JobDock, notify_failure
from napari_petite._widgets.state import session_for
from napari_petite.errors import ConfigError, InputError, PetiteError
from napari_petite.training.evaluation import label_names
from napari_petite.training.report import metric_rows, write_report

RECON_NAME = "reconstructed"
DIFF_NAME = "difference (reconstructed − full)"
NONE = "—"


def layer_volume(layer):
    """The layer as a :class:`Volume` (geometry from its metadata, else from its scale)."""
    from napari_petite.io.layers import volume_from_layer

    return volume_from_layer(layer.data, {"scale": tuple(layer.scale), "metadata": layer.metadata})


def derived_metadata(layer, **extra) -> dict:
    """Metadata of a layer computed from ``layer``: same geometry, no source path."""
    meta = {k: v for k, v in layer.metadata.items() if k in
            ("affine", "nifti_header", "units", "spacing")}
    meta["source_path"] = None
    meta.update(extra)
    return meta


class CompareDock(JobDock, QWidget):
    """Reconstruction, side-by-side / overlay / difference views, metrics and export."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.job: Job | None = None
        self.metrics: dict = {}
        self.recon_layer = None

        self.low = QComboBox()
        self.full = QComboBox()
        self.model = QComboBox()
        self.model.addItem("base model", "base")
        self.model.addItem("adapted model (this session)", "adapted")
        form = QFormLayout()
        form.addRow("low-count layer", self.low)
        form.addRow("full-count layer", self.full)
        form.addRow("model", self.model)

        self.run_button = QPushButton("Reconstruct")
        self.run_button.clicked.connect(self.reconstruct)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)

        self.grid_button = QPushButton("Side by side")
        self.grid_button.clicked.connect(self.show_grid)
        self.overlay_button = QPushButton("Overlay")
        self.overlay_button.clicked.connect(self.show_overlay)
        self.diff_button = QPushButton("Difference")
        self.diff_button.clicked.connect(self.show_difference)
        view_row = QHBoxLayout()
        for b in (self.grid_button, self.overlay_button, self.diff_button):
            view_row.addWidget(b)

        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["low vs full", "recon. vs full"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)

        self.export_button = QPushButton("Export NIfTI…")
        self.export_button.clicked.connect(self._export_dialog)
        self.report_button = QPushButton("PNG report…")
        self.report_button.clicked.connect(self._report_dialog)
        self.batch_button = QPushButton("Batch: test subjects…")
        self.batch_button.setToolTip("Reconstruct every test subject of the target scanner and "
                                     "write NIfTI volumes + metrics.json into a folder.")
        self.batch_button.clicked.connect(self._batch_dialog)
        export_row = QHBoxLayout()
        for b in (self.export_button, self.report_button, self.batch_button):
            export_row.addWidget(b)

        self.status = QLabel("Load a subject in 'Scanner data', then Reconstruct.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addLayout(view_row)
        layout.addWidget(self.table, 1)
        layout.addLayout(export_row)
        layout.addWidget(self.status)

        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed):
            ev.connect(self._refresh_layers)
        self.session.trained_changed.connect(self._model_choice)
        self._refresh_layers()
        self._model_choice()
        self._set_busy(False)
        self.stop_on_destroy()

    # -- layer choice ------------------------------------------------------------------------
    def _images(self, kind: str | None = None) -> list:
        from napari.layers import Image

        out = []
        for layer in self.viewer.layers:
            if not isinstance(layer, Image) or layer.ndim != 3 or layer.rgb:
                continue
            role = layer.metadata.get(ROLE_KEY, {})
            if kind is None or role.get("kind") == kind:
                out.append(layer)
        return out

    def _refresh_layers(self, *_) -> None:
        for combo, kind in ((self.low, "low"), (self.full, "full")):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            if combo is self.full:
                combo.addItem(NONE)
            names = [lay.name for lay in self._images() if lay.name not in (RECON_NAME,
                                                                            DIFF_NAME)]
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            else:
                preferred = [lay.name for lay in self._images(kind)]
                if preferred:
                    combo.setCurrentText(preferred[-1])
            combo.blockSignals(False)

    def _model_choice(self, *_) -> None:
        if self.session.trained is not None:
            self.model.setItemText(1, f"adapted: {self.session.trained.label}")
            self.model.setCurrentIndex(1)
        else:
            self.model.setItemText(1, "adapted model (train or load one first)")

    def _layer(self, combo):
        name = combo.currentText()
        return self.viewer.layers[name] if name and name != NONE and name in self.viewer.layers \
            else None

    def _model_loader(self):
        """A callable (run in the worker) returning (model, description)."""
        choice = self.model.currentData()
        if choice == "adapted":
            trained = self.session.trained
            if trained is None:
                raise ConfigError("No adapted model yet: train one in 'Fine-tune' (or load an "
                                  "adapter there), or choose the base model.")
            return lambda: (trained.model, f"adapted ({trained.label})")
        base = self.session.base_path
        if base is None:
            raise ConfigError("Choose a base checkpoint in the 'Fine-tune' dock first.")

        def load():
            from napari_petite.training.job import load_base

            model, card, _ = load_base(base)
            return model, f"base {card['backbone']}/{card['preset']}"

        return load

    # -- reconstruct ---------------------------------------------------------------------------
    def reconstruct(self) -> None:
        """Run the chosen model on the low-count layer in a worker."""
        low_layer, full_layer = self._layer(self.low), self._layer(self.full)
        try:
            if low_layer is None:
                raise InputError("Choose a low-count image layer (load a subject in 'Scanner "
                                 "data' or open a NIfTI file).")
            if full_layer is not None and full_layer.data.shape != low_layer.data.shape:
                raise InputError(f"{full_layer.name} has shape {full_layer.data.shape} but "
                                 f"{low_layer.name} has {low_layer.data.shape}; choose the "
                                 "matching full-count layer or none.")
            loader = self._model_loader()
        except PetiteError as err:
            notify_failure(err)
            return
        low = np.asarray(low_layer.data, dtype=np.float32)
        full = None if full_layer is None else np.asarray(full_layer.data, dtype=np.float32)
        labels, names = self._labels_for(low_layer)
        holder: dict = {}

        def body():
            from napari_petite.training.inference import Stopped, predict_volume
            from napari_petite.training.masks import head_mask
            from napari_petite.training.metrics import compare

            model, description = loader()
            try:
                recon = predict_volume(model, low, progress=lambda d, t: holder["job"].emit(
                    (d, t)), should_stop=holder["job"].stop_requested.is_set)
            except Stopped:
                return None
            metrics = {}
            if full is not None:
                yield "metrics"
                mask = head_mask(full)
                metrics = {"low": compare(low, full, mask=mask, labels=labels,
                                          label_names=names),
                           "recon": compare(recon, full, mask=mask, labels=labels,
                                            label_names=names)}
            return recon, metrics, description

        job = Job(body, desc="reconstructing", total=1, on_yield=self._progress,
                  on_done=lambda r: self._show_result(r, low_layer, full_layer))
        holder["job"] = job
        self.status.setText(f"Reconstructing {low_layer.name}…")
        self._start(job)

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

    def _live(self) -> bool:
        """A job runs and was not asked to stop: a progress report queued before Stop must
        not overwrite the "Stopping…"/"Stopped" status."""
        return not self.is_idle and not self.job.stop_requested.is_set()

    def _progress(self, value) -> None:
        if not self._live():
            return
        if isinstance(value, tuple):
            done, total = value
            pbar = getattr(self.job.worker, "pbar", None)
            if pbar is not None and pbar.total != total:
                pbar.total = total
            self.status.setText(f"Reconstructing: window batch {done}/{total}…")
            self.job.set_progress(done)
        elif value == "metrics":
            self.status.setText("Computing metrics…")

    def _show_result(self, result, low_layer, full_layer) -> None:
        if not isinstance(result, tuple):
            if result is None:
                self.status.setText("Stopped; nothing was added.")
            return
        from napari.experimental import link_layers

        from napari_petite.io.layers import PET_COLORMAP

        recon, metrics, description = result
        meta = derived_metadata(low_layer, model=description,
                                **{ROLE_KEY: {**low_layer.metadata.get(ROLE_KEY, {}),
                                              "kind": "reconstructed"}})
        for name in (RECON_NAME, DIFF_NAME):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.recon_layer = self.viewer.add_image(
            recon, name=RECON_NAME, scale=low_layer.scale, translate=low_layer.translate,
            metadata=meta, colormap=PET_COLORMAP, contrast_limits=low_layer.contrast_limits,
            blending="translucent")
        linked = [lay for lay in (low_layer, full_layer, self.recon_layer) if lay is not None]
        link_layers(linked, ("contrast_limits", "gamma"))
        self.metrics = metrics
        self._fill_table(metrics)
        self.status.setText(f"Reconstructed {low_layer.name} with the {description} model.")
        self.show_grid()

    def _fill_table(self, metrics: dict) -> None:
        rows = metric_rows(metrics.get("low"), metrics.get("recon"))
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([r[0] for r in rows])
        for i, (_, lo, rc) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(lo))
            self.table.setItem(i, 1, QTableWidgetItem(rc))

    # -- views ---------------------------------------------------------------------------------
    def _trio(self):
        low, full = self._layer(self.low), self._layer(self.full)
        layers = self.viewer.layers
        recon = layers[RECON_NAME] if RECON_NAME in layers else None  # noqa: SIM401 (no .get)
        return low, recon, full

    def _only(self, shown) -> None:
        for layer in self.viewer.layers:
            layer.visible = layer in shown

    def show_grid(self) -> None:
        """low | reconstructed | full side by side (napari grid mode)."""
        from napari_petite.io.layers import PET_COLORMAP

        shown = [lay for lay in self._trio() if lay is not None]
        if not shown:
            return
        for layer in shown:
            layer.colormap = PET_COLORMAP
            layer.blending = "translucent"
            layer.opacity = 1.0
        self._only(shown)
        # grid draws the list bottom-up: put the trio last, in reading order
        for i, layer in enumerate(reversed(shown)):
            self.viewer.layers.move(self.viewer.layers.index(layer), len(self.viewer.layers) - 1
                                    - i)
        grid = self.viewer.canvas.grid
        grid.shape = (1, len(shown))
        grid.stride = 1
        grid.enabled = True

    def show_overlay(self) -> None:
        """Reconstructed (magenta) over full (green), additive: grey where they agree."""
        low, recon, full = self._trio()
        if recon is None:
            return
        self.viewer.canvas.grid.enabled = False
        shown = [lay for lay in (full or low, recon) if lay is not None]
        self._only(shown)
        shown[0].colormap, shown[0].blending = "green", "additive"
        recon.colormap, recon.blending = "magenta", "additive"

    def show_difference(self) -> None:
        """reconstructed − full with a diverging colormap and symmetric contrast limits."""
        from napari_petite.io.layers import DIFF_COLORMAP

        _low, recon, full = self._trio()
        if recon is None or full is None:
            notify_failure(ConfigError("The difference needs a reconstruction and a full-count "
                                       "layer; reconstruct first and choose the full layer."))
            return
        diff = np.asarray(recon.data, np.float32) - np.asarray(full.data, np.float32)
        lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        if DIFF_NAME in self.viewer.layers:
            self.viewer.layers.remove(DIFF_NAME)
        layer = self.viewer.add_image(diff, name=DIFF_NAME, scale=recon.scale,
                                      translate=recon.translate, colormap=DIFF_COLORMAP,
                                      contrast_limits=(-lim, lim),
                                      metadata=derived_metadata(recon))
        self.viewer.canvas.grid.enabled = False
        self._only([layer])

    # -- export --------------------------------------------------------------------------------
    def _recon_or_fail(self):
        if RECON_NAME not in self.viewer.layers:
            notify_failure(ConfigError("Nothing to export yet: press Reconstruct first."))
            return None
        return self.viewer.layers[RECON_NAME]

    def _inputs(self) -> list[Path]:
        """Files the loaded layers came from: exports may never replace them."""
        paths = []
        for layer in self.viewer.layers:
            src = layer.metadata.get("source_path")
            if src:
                paths.append(Path(src))
        return paths

    def _export_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export reconstructed volume",
                                              "reconstructed.nii.gz", "NIfTI (*.nii.gz *.nii)")
        if path:
            self.export_nifti(path, overwrite=True)

    def export_nifti(self, path, overwrite: bool = False) -> Path | None:
        """Write the reconstruction with the input's affine/header/units (never over an input)."""
        from napari.utils.notifications import show_info

        from napari_petite.io.nifti import write_like

        layer = self._recon_or_fail()
        if layer is None:
            return None
        try:
            out = write_like(path, np.asarray(layer.data), layer_volume(layer),
                             inputs=self._inputs(), overwrite=overwrite)
        except PetiteError as err:
            notify_failure(err)
            return None
        show_info(f"Reconstruction written to {out}.")
        return out

    def _report_dialog(self) -> None:
        if self._recon_or_fail() is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "PNG report", "report.png", "PNG (*.png)")
        if path:
            self.export_report(path, overwrite=True)

    def export_report(self, path, overwrite: bool = False) -> Path | None:
        """Write the PNG report (slices + metrics) of the current reconstruction."""
        from napari.utils.notifications import show_info

        low, recon, full = self._trio()
        if self._recon_or_fail() is None or low is None:
            return None
        try:
            out = write_report(
                path, low=np.asarray(low.data), recon=np.asarray(recon.data),
                full=None if full is None else np.asarray(full.data), spacing=recon.scale,
                metrics_low=self.metrics.get("low"), metrics_recon=self.metrics.get("recon"),
                title=f"{low.name}: {recon.metadata.get('model', '')}", inputs=self._inputs(),
                overwrite=overwrite)
        except PetiteError as err:
            notify_failure(err)
            return None
        show_info(f"Report written to {out}.")
        return out

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
            loader = self._model_loader()
        except PetiteError as err:
            notify_failure(err)
            return
        folder = Path(folder).expanduser()
        ids = list(split.test)
        holder: dict = {}

        def body():
            import json

            from napari_petite.io.atomic import write_text
            from napari_petite.io.nifti import write_like
            from napari_petite.training.evaluation import summarise
            from napari_petite.training.inference import Stopped, predict_volume
            from napari_petite.training.masks import head_mask
            from napari_petite.training.metrics import compare

            model, description = loader()
            rows = []
            for k, sid in enumerate(ids):
                subject = scanner.subject(sid)
                from napari_petite.io.nifti import read_volume

                low, full = read_volume(subject.low), read_volume(subject.full)
                labels = read_volume(subject.labels).data if subject.labels else None
                try:
                    recon = predict_volume(model, low.data,
                                           should_stop=holder["job"].stop_requested.is_set)
                except Stopped:
                    return None
                out = folder / scanner.id / f"{sid}_reconstructed.nii.gz"
                out.parent.mkdir(parents=True, exist_ok=True)
                write_like(out, recon, low, inputs=[subject.full])
                mask = head_mask(full.data)
                names = label_names(subject.meta)
                rows.append({"subject": sid, "file": str(out),
                             "low": compare(low.data, full.data, mask=mask, labels=labels,
                                            label_names=names),
                             "recon": compare(recon, full.data, mask=mask, labels=labels,
                                              label_names=names)})
                yield (k + 1, len(ids))
            doc = {"model": description, "scanner": scanner.id, "subjects": rows,
                   "mean": summarise(rows)}
            write_text(folder / scanner.id / "metrics.json",
                       json.dumps(doc, indent=2, default=float) + "\n", overwrite=True)
            return len(rows), folder / scanner.id

        def done(result):
            if result is None:
                self.status.setText("Stopped; the volumes exported so far are kept, without "
                                    "a metrics.json.")
            elif isinstance(result, tuple):
                from napari.utils.notifications import show_info

                self.status.setText(f"Exported {result[0]} test subject(s) to {result[1]}.")
                show_info(self.status.text())

        job = Job(body, desc=f"exporting {scanner.id} test subjects", total=len(ids),
                  on_yield=self._batch_progress, on_done=done)
        holder["job"] = job
        self.status.setText(f"Exporting {len(ids)} test subject(s) of {scanner.id}…")
        self._start(job)

    def _batch_progress(self, value) -> None:
        if self._live():
            self.status.setText(f"Exported {value[0]}/{value[1]} test subjects…")
            self.job.set_progress(value[0])

    # -- jobs ----------------------------------------------------------------------------------
    def _start(self, job: Job) -> None:
        self._run_job(job, busy="Still working; wait or press Stop.",
                      failed=lambda f: f"Failed: {f.message}")

    def stop(self) -> None:
        if self._live():
            self.job.stop()
            self.status.setText("Stopping…")

    def _set_busy(self, busy: bool) -> None:
        for b in (self.run_button, self.export_button, self.report_button, self.batch_button):
            b.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
