"""The "Fine-tune" dock: base model, Mix-PEFT choice, training settings, Start/Pause/Stop.

Training is the engine's generator run by a napari worker (:mod:`.jobs`); the dock only turns
its events into the activity-dock progress bar, a status line and the live curves. Only
methods that fit a part are selectable (the others stay listed, greyed, with the reason),
and the "trainable" line is counted by applying the very spec a run would use to the base
network built on PyTorch's meta device (no memory, milliseconds), cached per choice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_petite._widgets.curves import TrainingCurves
from napari_petite._widgets.jobs import Failure, Job, JobDock, notify_failure
from napari_petite._widgets.state import TrainedModel, session_for, unwrap
from napari_petite.errors import ConfigError, PetiteError

#: a GUI run writes a resumable checkpoint this often (and when stopped)
CHECKPOINT_EVERY = 25
#: while training, the status line, the activity-dock progress and the curves change together
#: at most this often. Each change repaints the curves (pyqtgraph axes, ~20 ms) and recomposes
#: the window around napari's OpenGL canvas (~40 ms more at 1600x1000 with software OpenGL):
#: done on every step (about one a second on a CPU), that was a ~60 ms stall per step.
DISPLAY_MS = 2000


def runs_dir() -> Path:
    """Where GUI runs keep their resumable checkpoints (the user's cache)."""
    from napari_petite._resources import cache_dir

    return cache_dir() / "runs"


def new_run_folder(target: str | None) -> Path:
    """A fresh folder for one GUI run's resumable checkpoint: closing napari (or a crash)
    mid-run must not lose the steps done so far."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = runs_dir() / f"{stamp}-{target or 'target'}"
    n = 1
    while folder.exists():
        n += 1
        folder = folder.with_name(f"{stamp}-{target or 'target'}-{n}")
    return folder


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"


def trainable_line(n_trainable: int, n_total: int, percent: float) -> str:
    return f"trainable: {n_trainable:,} of {n_total:,} parameters ({percent:.2f} %)"


class _Counter:
    """Trainable-parameter counts per (network, spec), from meta-device models, cached."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, int, float]] = {}
        self._models: dict[str, object] = {}

    @staticmethod
    def _build(backbone: str, preset: str, config: dict | None):
        import torch

        from napari_petite.models.registry import build_model

        with torch.device("meta"):
            return build_model(backbone, preset, **(config or {}))

    def model(self, backbone: str, preset: str, config: dict | None):
        """A meta-device model for feasibility questions (not modified, cached)."""
        key = json.dumps([backbone, preset, config], sort_keys=True, default=str)
        if key not in self._models:
            self._models[key] = self._build(backbone, preset, config)
        return self._models[key]

    def count(self, spec, config: dict | None) -> tuple[int, int, float]:
        from napari_petite.peft.apply import apply_spec

        key = json.dumps([spec.to_dict(), config], sort_keys=True, default=str)
        if key not in self._cache:
            report = apply_spec(self._build(spec.backbone, spec.preset, config), spec)
            self._cache[key] = (report.n_trainable, report.n_total, report.percent)
        return self._cache[key]


class FineTuneDock(JobDock, QWidget):
    """Mix-PEFT fine-tuning of a base model on the target scanner, with live curves."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        from napari_petite.models.registry import backbone_names
        from napari_petite.peft.spec import LABELS, METHODS
        from napari_petite.training.device import CHOICES

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.job: Job | None = None
        self.control = None
        self.run_folder: Path | None = None
        self._counter = _Counter()
        self._card: dict | None = None
        self._last_event = None
        self._count_job: Job | None = None
        self._pending: tuple | None = None

        # -- model ------------------------------------------------------------------------
        self.backbone = QComboBox()
        self.backbone.addItems(backbone_names())
        self.preset = QComboBox()
        self.base = QLineEdit()
        self.base.setPlaceholderText("base checkpoint (.safetensors) pre-trained on the source")
        self.base.editingFinished.connect(lambda: self.set_base(self.base.text() or None))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_base)
        base_row = QHBoxLayout()
        base_row.addWidget(self.base, 1)
        base_row.addWidget(browse)
        self.base_info = QLabel()
        self.base_info.setWordWrap(True)
        model_box = QGroupBox("Base model")
        form = QFormLayout(model_box)
        form.addRow("backbone", self.backbone)
        form.addRow("preset", self.preset)
        form.addRow("base", base_row)
        form.addRow(self.base_info)

        # -- Mix-PEFT -----------------------------------------------------------------------
        self.encoder = QComboBox()
        self.decoder = QComboBox()
        for combo in (self.encoder, self.decoder):
            for method in METHODS:
                combo.addItem(f"{LABELS[method]} ({method})", method)
        self.bitfit = QCheckBox("BitFit (also train the biases)")
        self.bitfit.setChecked(True)
        self.lora_rank = QSpinBox()
        self.lora_rank.setRange(1, 256)
        self.lora_targets = QComboBox()
        self.lora_targets.addItems(["qk", "qkv"])
        self.adapter_reduction = QSpinBox()
        self.adapter_reduction.setRange(1, 64)
        self.vpt_tokens = QSpinBox()
        self.vpt_tokens.setRange(0, 512)
        self.vpt_tokens.setSpecialValueText("default")
        self.vpt_deep = QCheckBox("deep prompts")
        self.reasons = QLabel()
        self.reasons.setWordWrap(True)
        self.reasons.setStyleSheet("color: #a0a0a0;")
        self.trainable = QLabel("trainable: -")
        self.trainable.setStyleSheet("font-weight: bold;")
        peft_box = QGroupBox("Mix-PEFT")
        form = QFormLayout(peft_box)
        form.addRow("encoder", self.encoder)
        form.addRow("decoder", self.decoder)
        form.addRow(self.bitfit)
        lora_row = QHBoxLayout()
        lora_row.addWidget(self.lora_rank)
        lora_row.addWidget(QLabel("targets"))
        lora_row.addWidget(self.lora_targets)
        form.addRow("LoRA rank", lora_row)
        other_row = QHBoxLayout()
        other_row.addWidget(self.adapter_reduction)
        other_row.addWidget(QLabel("VPT tokens"))
        other_row.addWidget(self.vpt_tokens)
        other_row.addWidget(self.vpt_deep)
        form.addRow("adapter reduction", other_row)
        form.addRow(self.reasons)
        form.addRow(self.trainable)

        # -- training -----------------------------------------------------------------------
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setSpecialValueText("per method (paper)")
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(200)
        self.val_every = QSpinBox()
        self.val_every.setRange(0, 100_000)
        self.val_every.setValue(25)
        self.val_every.setSpecialValueText("never")
        self.patch = QSpinBox()
        self.patch.setRange(0, 512)
        self.patch.setSpecialValueText("model window")
        self.batch = QSpinBox()
        self.batch.setRange(1, 64)
        self.batch.setValue(2)
        self.device = QComboBox()
        self.device.addItems(CHOICES)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        train_box = QGroupBox("Training")
        grid = QGridLayout(train_box)
        cells = (("learning rate", self.lr), ("steps", self.steps),
                 ("validate every", self.val_every), ("patch size", self.patch),
                 ("batch", self.batch), ("device", self.device), ("seed", self.seed))
        for i, (label, widget) in enumerate(cells):
            grid.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            grid.addWidget(widget, i // 2, 2 * (i % 2) + 1)

        # -- run ----------------------------------------------------------------------------
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume…")
        self.resume_button.setToolTip("Continue a stopped or interrupted run from its "
                                      "checkpoint folder (same base, methods and data)")
        self.resume_button.clicked.connect(self._resume_dialog)
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        run_row = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button, self.resume_button):
            run_row.addWidget(b)
        self.status = QLabel("Idle.")
        self.status.setWordWrap(True)
        self.curves = TrainingCurves(redraw_ms=None)  # redrawn by _flush_display
        self._pending_step = None
        self._display = QTimer(self)
        self._display.setInterval(DISPLAY_MS)
        self._display.timeout.connect(self._flush_display)
        self.save_button = QPushButton("Save adapter…")
        self.save_button.clicked.connect(self._save_dialog)
        self.load_button = QPushButton("Load adapter…")
        self.load_button.clicked.connect(self._load_dialog)
        bundle_row = QHBoxLayout()
        bundle_row.addWidget(self.save_button)
        bundle_row.addWidget(self.load_button)

        layout = QVBoxLayout(self)
        for w in (model_box, peft_box, train_box):
            layout.addWidget(w)
        layout.addLayout(run_row)
        layout.addWidget(self.status)
        layout.addWidget(self.curves, 1)
        layout.addLayout(bundle_row)

        self.backbone.currentIndexChanged.connect(self._backbone_changed)
        self.preset.currentIndexChanged.connect(self._choices_changed)
        for combo in (self.encoder, self.decoder, self.lora_targets):
            combo.currentIndexChanged.connect(self._choices_changed)
        for spin in (self.lora_rank, self.adapter_reduction, self.vpt_tokens):
            spin.valueChanged.connect(self._choices_changed)
        for box in (self.bitfit, self.vpt_deep):
            box.toggled.connect(self._choices_changed)
        self.session.trained_changed.connect(self._set_idle)
        self._default_base()
        self._backbone_changed()
        self._set_idle()
        self.stop_on_destroy()
        self._watch_main_window()

    # -- base model ----------------------------------------------------------------------
    def _default_base(self) -> None:
        from napari_petite.training.job import shipped_base

        try:
            path = shipped_base(self.backbone.currentText())
        except (PetiteError, OSError):
            return
        self.set_base(path)

    def _browse_base(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Base checkpoint", self.base.text(),
                                              "safetensors checkpoint (*.safetensors)")
        if path:
            self.set_base(path)

    def set_base(self, path) -> None:
        """Choose the base checkpoint; its card fixes the preset and network configuration."""
        from napari_petite.models.checkpoint import read_card

        self._card = None
        self.base.setText(str(path) if path else "")
        if path:
            try:
                self._card = read_card(path)
            except PetiteError as err:
                self.base_info.setText(f"⚠ {err}")
                self.base_info.setStyleSheet("color: #e0a040;")
            else:
                card = self._card
                extra = f", trained on {card['source']}" if card.get("source") else ""
                self.base_info.setText(f"{card['backbone']} / {card['preset']}, "
                                       f"{card.get('n_params', 0):,} parameters{extra}")
                self.base_info.setStyleSheet("")
        else:
            self.base_info.setText("No base chosen: counts use the untrained preset.")
        self.session.set_base(Path(path) if path else None)
        self._choices_changed()

    def _network(self) -> tuple[str, str, dict | None]:
        """(backbone, preset, config) of the network a run would adapt."""
        backbone = self.backbone.currentText()
        card = self._card
        if card is not None and card.get("backbone") == backbone:
            return backbone, card["preset"], card["config"]
        return backbone, self.preset.currentText() or "small", None

    # -- spec ----------------------------------------------------------------------------
    def _backbone_changed(self, *_) -> None:
        from napari_petite.models.registry import preset_names
        from napari_petite.peft.spec import PETITE, default_params

        backbone = self.backbone.currentText()
        for w in (self.preset, self.encoder, self.decoder, self.lora_rank,
                  self.adapter_reduction):
            w.blockSignals(True)
        self.preset.clear()
        self.preset.addItems(preset_names(backbone))
        self.preset.setCurrentText("small")
        enc, dec = PETITE.get(backbone, ("lora", "ssf"))
        self.encoder.setCurrentIndex(self.encoder.findData(enc))
        self.decoder.setCurrentIndex(self.decoder.findData(dec))
        self.lora_rank.setValue(int(default_params(backbone, "lora")["rank"]))
        self.adapter_reduction.setValue(int(default_params(backbone, "adapter")["reduction"]))
        for w in (self.preset, self.encoder, self.decoder, self.lora_rank,
                  self.adapter_reduction):
            w.blockSignals(False)
        self._choices_changed()

    def _params(self) -> dict:
        """Hyper-parameters of the chosen methods only (the spec stores what is used)."""
        rank = self.lora_rank.value()
        every = {
            "lora": {"rank": rank, "alpha": 2.0 * rank, "targets": self.lora_targets.currentText()},
            "adapter": {"reduction": self.adapter_reduction.value()},
            "vpt": {"tokens": self.vpt_tokens.value() or None, "deep": self.vpt_deep.isChecked()},
        }
        used = {self.encoder.currentData(), self.decoder.currentData()}
        return {m: p for m, p in every.items() if m in used}

    def spec(self):
        """The Mix-PEFT spec the form describes (raises ConfigError when it cannot be)."""
        from napari_petite.peft.spec import MixPEFTSpec

        backbone, preset, _ = self._network()
        return MixPEFTSpec(backbone, preset, self.encoder.currentData(),
                           self.decoder.currentData(), self.bitfit.isChecked(), self._params())

    def _choices_changed(self, *_) -> None:
        """Recount (in a worker) which methods fit and how many parameters would train."""
        used = {self.encoder.currentData(), self.decoder.currentData()}
        self.lora_rank.setEnabled("lora" in used)
        self.lora_targets.setEnabled("lora" in used)
        self.adapter_reduction.setEnabled("adapter" in used)
        self.vpt_tokens.setEnabled("vpt" in used)
        self.vpt_deep.setEnabled("vpt" in used)
        backbone, preset, config = self._network()
        self._pending = (backbone, preset, config, self.encoder.currentData(),
                         self.decoder.currentData(), self.bitfit.isChecked(), self._params())
        self.trainable.setText("trainable: counting…")
        if self._count_job is None or not self._count_job.running:
            self._start_count()

    @property
    def counting(self) -> bool:
        """A count is under way or waiting (the trainable line is not final yet)."""
        return self._pending is not None or (self._count_job is not None
                                             and self._count_job.running)

    def _start_count(self) -> None:
        from napari_petite.peft.spec import METHODS, MixPEFTSpec, default_params, why_not

        request, self._pending = self._pending, None
        if request is None:
            return
        backbone, preset, config, enc, dec, bitfit, params = request
        counter = self._counter

        def body():
            # meta-device network: no memory, but building a big preset takes seconds
            net = counter.model(backbone, preset, config)
            reasons = {}
            for part in ("encoder", "decoder"):
                for method in METHODS:
                    merged = default_params(backbone, method)
                    merged.update(params.get(method, {}))
                    reasons[(part, method)] = why_not(net, part, method, merged)
            yield reasons
            if reasons[("encoder", enc)] or reasons[("decoder", dec)]:
                return None  # the GUI switches to a fitting method, which recounts
            try:
                spec = MixPEFTSpec(backbone, preset, enc, dec, bitfit, params)
                return counter.count(spec, config)
            except PetiteError as err:
                return err

        def done(result):
            self._count_job = None
            if self._pending is not None:
                self._start_count()
            elif isinstance(result, PetiteError):
                self.trainable.setText(f"trainable: - ({result})")
            elif isinstance(result, tuple):
                self.trainable.setText(trainable_line(*result))
            elif isinstance(result, Failure):
                self.trainable.setText("trainable: - (see the notification)")

        self._count_job = Job(body, desc="counting parameters", on_yield=self._show_fits,
                              on_done=done, progress=False)
        self._count_job.start()

    def _show_fits(self, reasons: dict) -> None:
        """Grey out methods that do not fit a part (reason in the tooltip and below)."""
        from napari_petite.peft.spec import LABELS, METHODS

        lines = []
        for part, combo in (("encoder", self.encoder), ("decoder", self.decoder)):
            model = combo.model()
            for row, method in enumerate(METHODS):
                reason = reasons[(part, method)]
                item = model.item(row)
                item.setEnabled(reason is None)
                item.setToolTip(reason or "")
                if reason is not None:
                    lines.append(f"{part}: no {LABELS[method]} — {reason}")
            if not model.item(combo.currentIndex()).isEnabled():
                first = next(r for r in range(len(METHODS)) if model.item(r).isEnabled())
                combo.setCurrentIndex(first)  # -> _choices_changed -> recount
        self.reasons.setText("\n".join(lines))

    def _method_params(self, method: str, params: dict) -> dict:
        from napari_petite.peft.spec import default_params

        backbone = self.backbone.currentText()
        merged = default_params(backbone, method)
        merged.update(params.get(method, {}))
        return merged

    def train_config(self, checkpoint_dir: str | Path | None = None):
        from napari_petite.training.engine import TrainConfig

        patch = self.patch.value()
        return TrainConfig(steps=self.steps.value(), batch_size=self.batch.value(),
                           lr=self.lr.value() or None, val_every=self.val_every.value(),
                           patch_size=(patch,) * 3 if patch else None, seed=self.seed.value(),
                           device=self.device.currentText(),
                           checkpoint_every=CHECKPOINT_EVERY if checkpoint_dir else 0,
                           checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)

    # -- run -----------------------------------------------------------------------------
    def _resume_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Checkpoint folder of the run to resume",
                                                  str(runs_dir()))
        if folder:
            self.start(resume=folder)

    def start(self, resume: str | Path | None = None) -> None:
        """Start training in a worker (errors become notifications; the dock stays usable).

        Every run checkpoints into its own folder (``resume`` continues the run saved there,
        and keeps checkpointing into it)."""
        if self.job is not None and self.job.running:
            return
        try:
            body = self._training_body(resume)
        except PetiteError as err:
            notify_failure(err)
            return
        from napari_petite.training.engine import Control

        self.control = Control()
        control = self.control
        self.curves.clear()
        self._display.start()
        self._last_event = None
        self.job = Job(lambda: body(control), desc="fine-tuning", total=self.steps.value(),
                       on_yield=self._on_event, on_done=self._finished, on_stop=control.stop)
        self.status.setText("Loading the base model and the target subjects…")
        self._set_running()
        self.job.start()

    def _training_body(self, resume: str | Path | None = None):
        """Validate the form on the GUI thread; return the worker body (no Qt inside)."""
        session = self.session
        scanner = session.target_scanner()
        if scanner is None:
            raise ConfigError("Open a dataset and choose a target scanner in the 'Scanner data' "
                              "dock first.")
        if session.split is None:
            raise ConfigError(f"The subjects of {scanner.id} cannot be split into training, "
                              "validation and test sets; adjust the counts in 'Scanner data'.")
        if not self.base.text():
            raise ConfigError("Choose a base checkpoint (.safetensors) pre-trained on the "
                              "source scanner.")
        base = Path(self.base.text()).expanduser()
        spec = self.spec()
        self.run_folder = Path(resume) if resume else new_run_folder(session.target)
        config = self.train_config(self.run_folder)
        split = session.split
        backbone = self.backbone.currentText()
        source = session.source

        def body(control):
            import torch

            from napari_petite.training.job import JobRequest, build_run

            # leave the GUI a core (a second training thread doubles the GUI's p99 stall)
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
            run = build_run(JobRequest(scanner, split, config, spec=spec, base=base,
                                       backbone=backbone, resume=resume, source=source))
            result = yield from run.trainer.run(control)
            return TrainedModel(run.model.cpu(), spec, base, run.base_sha256,
                                run.record(result), run.metrics(result), config.seed)

        return body

    def _on_event(self, event) -> None:
        self._last_event = event
        if event.kind == "step":
            self.curves.add_loss(event.step, event.loss)
            self._pending_step = event  # shown by _flush_display
        elif event.kind == "val" and event.val:
            self.curves.add_validation(event.step, event.val["psnr"])
        elif event.kind == "start":
            self.status.setText(f"Started: {event.message}.")
        elif event.kind == "paused":
            self.status.setText(f"Paused at step {event.step}/{event.total_steps}.")
        elif event.kind == "resumed":
            self.status.setText(f"Resumed at step {event.step}.")

    def _flush_display(self) -> None:
        """Show the latest step and redraw the curves in one window update."""
        event, self._pending_step = self._pending_step, None
        if event is not None:
            control = self.control
            if control is None or not (control.stopped or control.paused):
                # a step shown late must not hide "Stopping…" / "Pausing…"
                self.status.setText(f"step {event.step}/{event.total_steps} · loss "
                                    f"{event.loss:.4g} · ETA {_format_eta(event.eta_s)}")
            if self.job is not None:
                self.job.set_progress(event.step,
                                      f"fine-tuning · ETA {_format_eta(event.eta_s)}")
        self.curves.redraw()

    def _finished(self, result) -> None:
        self._display.stop()
        self._flush_display()
        self.control = None
        if isinstance(result, TrainedModel):
            best = result.metrics.get("val_best")
            val = f"; best validation PSNR {best['psnr']:.2f} dB at step {best['step']}" \
                if best else ""
            how = "Stopped" if result.training.get("stopped") else "Done"
            resumable = f" Resumable checkpoint: {self.run_folder}." \
                if how == "Stopped" and (self.run_folder / "resume.json").is_file() else ""
            self.status.setText(f"{how} after {result.training['steps_done']} steps in "
                                f"{result.training['seconds']:.0f} s{val}. Save the adapter or "
                                f"reconstruct in 'Reconstruct & compare'.{resumable}")
            from napari.utils.notifications import show_info

            show_info(f"napari-petite: fine-tuning {how.lower()} ({result.spec.label}).")
            self.session.set_trained(result)  # -> _set_idle
            return
        if isinstance(result, Failure):
            self.status.setText(f"Failed: {result.message}")
        else:
            self.status.setText("Stopped.")
        self._set_idle()

    def toggle_pause(self) -> None:
        if self.control is None:
            return
        if self.control.paused:
            self.control.resume()
            self.pause_button.setText("Pause")
        else:
            self.control.pause()
            self.pause_button.setText("Resume")
            self.status.setText("Pausing after the current step…")

    def stop(self) -> None:
        """Stop after the current step; the best validated state so far is kept."""
        if self.control is not None:
            self.control.stop()
            self.status.setText("Stopping after the current step…")

    def _set_running(self) -> None:
        self.start_button.setEnabled(False)
        self.pause_button.setEnabled(True)
        self.pause_button.setText("Pause")
        self.stop_button.setEnabled(True)
        self.resume_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.load_button.setEnabled(False)

    def _set_idle(self) -> None:
        if not self.is_idle:
            return
        self.start_button.setEnabled(True)
        self.pause_button.setEnabled(False)
        self.pause_button.setText("Pause")
        self.stop_button.setEnabled(False)
        self.resume_button.setEnabled(True)
        self.save_button.setEnabled(self.session.trained is not None)
        self.load_button.setEnabled(True)

    # -- adapter bundles -------------------------------------------------------------------
    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Adapter bundle folder to create", "adapter")
        if path:
            self.save_adapter(path)

    def save_adapter(self, folder, overwrite: bool = False) -> Path | None:
        """Write the session's trained model as an adapter bundle (a small folder)."""
        from napari.utils.notifications import show_info

        from napari_petite.peft.bundle import save_adapter

        trained = self.session.trained
        if trained is None:
            notify_failure(ConfigError("Nothing to save yet: train (or load) an adapter first."))
            return None
        try:
            out = save_adapter(trained.model, trained.spec, folder,
                               base_sha256=trained.base_sha256, training=trained.training,
                               metrics=trained.metrics, seed=trained.seed, overwrite=overwrite)
        except PetiteError as err:
            notify_failure(err)
            return None
        trained.bundle = out
        show_info(f"Adapter saved to {out}.")
        return out

    def _load_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Adapter bundle folder")
        if folder:
            self.load_adapter(folder)

    def load_adapter(self, folder) -> None:
        """Load a bundle onto the chosen base (in a worker); it becomes the session's model."""
        if not self.is_idle:
            return
        base_text = self.base.text()
        if not base_text:
            notify_failure(ConfigError("Choose the base checkpoint the adapter was trained "
                                       "from before loading the adapter."))
            return
        base = Path(base_text).expanduser()

        def body():
            from napari_petite.peft.bundle import load_adapter, read_card
            from napari_petite.training.job import load_base

            card = read_card(folder)
            model, _, sha = load_base(base, card["spec"]["backbone"])
            yield "loaded base"
            spec = load_adapter(model, folder, base_sha256=sha)
            return TrainedModel(model, spec, base, sha, card.get("training") or {},
                                card.get("metrics") or {}, int(card.get("seed") or 0),
                                bundle=Path(folder))

        def done(result):
            if isinstance(result, TrainedModel):
                self.status.setText(f"Loaded adapter {folder} ({result.spec.label}).")
                self.session.set_trained(result)
            self._set_idle()

        self.job = Job(body, desc="loading adapter", on_done=done)
        self._set_running()
        self.pause_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.job.start()

    # -- closing ---------------------------------------------------------------------------
    def _watch_main_window(self) -> None:
        """Stop training before napari's main window goes away (no dangling worker)."""
        from qtpy.QtCore import QObject

        try:
            qt_window = unwrap(self.viewer).window._qt_window
        except AttributeError:
            return
        dock = self

        class _CloseFilter(QObject):
            def eventFilter(self, obj, event):
                from qtpy.QtCore import QEvent

                if event.type() == QEvent.Type.Close:
                    dock.shutdown()
                return False

        self._close_filter = _CloseFilter(self)
        qt_window.installEventFilter(self._close_filter)

    def _jobs(self) -> tuple[Job | None, ...]:
        return (self.job, self._count_job)

    def shutdown(self, timeout: float = 30.0) -> None:
        self._pending = None
        super().shutdown(timeout)
        self._count_job = None
