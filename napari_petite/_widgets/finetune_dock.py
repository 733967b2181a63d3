"""The "Fine-tune" dock: base model, what to train, how long, and the run with its curves.

It composes four small widgets (:mod:`.base_chooser`, :mod:`.method_form`,
:mod:`.training_form`, :mod:`.run_panel`) and holds no training logic: a run is a
:class:`~napari_petite.training.job.JobRequest` built from the form on the GUI thread and
driven by the engine in a napari worker, stopped only through its ``Control`` (the Stop
button, closing the dock and closing napari alike), so every run ends on its at-stop
checkpoint. Every run checkpoints into its own folder with a ``run.json`` describing it;
*Open saved run…* continues one with its own settings and curves. Every finished run and
every loaded bundle joins the session's model list under its own name, unless it never
improved on the model it started from.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QInputDialog, QPushButton, QWidget

from napari_petite._widgets.base_chooser import BaseChooser
from napari_petite._widgets.import_base import ImportBaseButton
from napari_petite._widgets.layout import scroll_layout
from napari_petite._widgets.method_form import MixPEFTForm, plain_recipe
from napari_petite._widgets.run_panel import RunPanel
from napari_petite._widgets.state import TrainedModel, session_for, unwrap
from napari_petite._widgets.tasks import Failure, Task, TaskDock, notify_failure
from napari_petite._widgets.training_form import TrainingSettings, recipe_words
from napari_petite.errors import CheckpointError, ConfigError, PetiteError

#: the description of a GUI run inside its folder
RUN_FILE = "run.json"


def runs_dir() -> Path:
    """Where GUI runs keep their resumable checkpoints (the user's cache)."""
    from napari_petite._resources import cache_dir

    return cache_dir() / "runs"


def new_run_folder(target: str | None) -> Path:
    """A fresh folder for one GUI run: closing napari (or a crash) mid-run must not lose the
    steps done so far."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = runs_dir() / f"{stamp}-{target or 'target'}"
    n = 1
    while folder.exists():
        n += 1
        folder = folder.with_name(f"{stamp}-{target or 'target'}-{n}")
    return folder


def trainable_line(n_trainable: int, n_total: int, percent: float) -> str:
    from napari_petite.peft.count import BUDGET_PERCENT

    line = f"trains {n_trainable:,} of {n_total:,} weights ({percent:.2f} %)"
    if BUDGET_PERCENT < percent < 100:
        line += (f": over the {BUDGET_PERCENT:g} % of parameter-efficient tuning; a lower "
                 "rank, a larger reduction or fewer tokens trains less")
    return line


#: inside a run folder: the adapter of a run that finished (opened again, it is loaded, not
#: retrained)
FINISHED = "adapter"


def is_finished(folder: Path) -> bool:
    return (Path(folder) / FINISHED / "adapter.safetensors").is_file()


def is_resumable(folder: Path) -> bool:
    return all((Path(folder) / f).is_file() for f in (RUN_FILE, "resume.json",
                                                      "resume.safetensors"))


def saved_runs() -> list[tuple[Path, str]]:
    """The runs that can be opened, newest first, each with a line saying what it is: a
    finished run (its adapter is there) or a stopped one (its checkpoint is); folders that
    hold neither are not listed."""
    folder = runs_dir()
    out = []
    for run in sorted(folder.iterdir() if folder.is_dir() else (), reverse=True):
        finished, resumable = is_finished(run), is_resumable(run)
        if not (run / RUN_FILE).is_file() or not (finished or resumable):
            continue
        try:
            doc = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
            step = json.loads((run / "resume.json").read_text(encoding="utf-8"))["step"] \
                if resumable else None
        except (OSError, ValueError, KeyError):
            continue
        config = doc.get("config", {})
        total = config.get("steps")
        from napari_petite.peft.spec import MixPEFTSpec
        from napari_petite.training.engine import FIDELITY_FIELDS, TrainConfig

        recipe = plain_recipe(MixPEFTSpec.from_dict(doc["spec"])) if doc.get("spec") else ""
        # a run saved before the recipe was recorded trained with the paper's (the defaults)
        how = recipe_words(TrainConfig(**{k: config[k] for k in FIDELITY_FIELDS
                                          if k in config}))
        state = f"finished, {total} steps" if finished else f"stopped at step {step} of {total}"
        out.append((run, f"{run.name}: {doc.get('target')}, {recipe} ({state}; {how})"))
    return out


def describe_run(request, card: dict | None) -> str:
    """What a run trains, in words: base, target, methods, length, training recipe."""
    card = card or {}
    base = f"{card.get('backbone', request.backbone or '')} {card.get('preset', '')}".strip()
    source = card.get("source") or request.source
    spec = request.spec
    recipe = plain_recipe(spec) if spec is not None else "the paper's recipe"
    n = len(request.split.train)
    return (f"base {base}{f' (pre-trained on {source})' if source else ''} adapted to "
            f"{request.scanner.id} ({n} training subject{'s' * (n != 1)}): {recipe}; "
            f"{request.config.steps} steps; {recipe_words(request.config)}")


def read_saved_run(folder: Path):
    """(request, (losses, val_history)) of a GUI run folder, for *Open saved run…*."""
    from napari_petite.io.jsonfile import read_json
    from napari_petite.training.job import JobRequest

    if not (folder / RUN_FILE).is_file() or not (folder / "resume.json").is_file():
        raise CheckpointError(f"{folder} holds no saved run (it needs {RUN_FILE} and "
                              "resume.json); choose a folder under the runs folder.")
    hint = "the saved run is damaged; start a new run"
    doc = read_json(folder / RUN_FILE, error=CheckpointError, hint=hint)
    state = read_json(folder / "resume.json", error=CheckpointError, hint=hint)
    return (JobRequest.from_dict(doc, resume=folder),
            (state.get("losses", []), state.get("val_history", [])))


class FineTuneDock(TaskDock, QWidget):
    """Mix-PEFT fine-tuning of a base model on the target scanner, with live curves."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        from napari_petite.peft.count import SpecCounter

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.task: Task | None = None
        self.run_folder: Path | None = None
        self._counter, self._count_task, self._pending = SpecCounter(), None, None
        self._recipe_task: Task | None = None
        self.chooser, self.form = BaseChooser(), MixPEFTForm()
        self.settings, self.run = TrainingSettings(), RunPanel()
        self.save_button = QPushButton("Save adapter…")
        self.load_button = QPushButton("Load adapter…")
        bundle_row = QHBoxLayout()
        bundle_row.addWidget(self.save_button)
        bundle_row.addWidget(self.load_button)
        layout = scroll_layout(self)
        self.import_base = ImportBaseButton(self.chooser)
        for w in (self.chooser, self.import_base, self.form, self.settings):
            layout.addWidget(w)
        layout.addWidget(self.run, 1)
        layout.addLayout(bundle_row)
        self.run.start_button.clicked.connect(lambda: self.start())
        self.run.pause_button.clicked.connect(self.run.toggle_pause)
        self.run.stop_button.clicked.connect(self.stop)
        self.run.open_button.clicked.connect(self._open_dialog)
        self.save_button.clicked.connect(self._save_dialog)
        self.load_button.clicked.connect(self._load_dialog)
        self.chooser.changed.connect(self._base_changed)
        self.form.changed.connect(self._recount)
        self.session.models_changed.connect(self._set_idle)
        self._base_changed()
        self._set_idle()
        self.stop_on_destroy()
        self._watch_main_window()

    # -- the form ------------------------------------------------------------------------
    def _base_changed(self) -> None:
        self.session.set_base(self.chooser.path, self.chooser.card)
        backbone, preset, config = self.chooser.network()
        self.form.reset(backbone)  # the paper's recipe now (-> recount), fitted below
        counter = self._counter

        def fitted(recipe) -> None:
            from napari_petite.peft.spec import MixPEFTSpec

            if isinstance(recipe, MixPEFTSpec) and self.chooser.network()[0] == backbone:
                self.form.follow_recipe(recipe)

        def body(_control):
            return counter.recommended(backbone, preset, config)
            yield  # unreachable: makes the body the generator a Task runs

        if self._recipe_task is not None:
            self._recipe_task.on_done = None  # an older base's recipe no longer applies
        self._recipe_task = Task(body, desc="fitting the recipe to the base", on_done=fitted,
                                 progress=False, torch=True)
        self._recipe_task.start()

    def set_base(self, path) -> None:
        """Choose the base checkpoint (its card fixes backbone, preset and configuration)."""
        self.chooser.set_base(path)

    def spec(self):
        backbone, preset, _ = self.chooser.network()
        return self.form.spec(backbone, preset)

    def _recount(self) -> None:
        """Recount (in a worker) which methods fit and how many weights would train."""
        backbone, preset, config = self.chooser.network()
        form = self.form
        self._pending = (backbone, preset, config, form.encoder.currentData(),
                         form.decoder.currentData(), form.bitfit.isChecked(), form.params())
        form.trainable.setText("trains: counting…")
        if self._count_task is None or not self._count_task.running:
            self._start_count()

    @property
    def counting(self) -> bool:
        """A count is under way or waiting (the trainable line is not final yet)."""
        return (self._pending is not None
                or any(t is not None and t.running
                       for t in (self._count_task, self._recipe_task)))

    def _start_count(self) -> None:
        from napari_petite.peft.spec import MixPEFTSpec

        request, self._pending = self._pending, None
        if request is None:
            return
        backbone, preset, config, enc, dec, bitfit, params = request
        counter = self._counter

        def body(_control):
            reasons = counter.reasons(backbone, preset, config, params)
            yield reasons
            if reasons[("encoder", enc)] or reasons[("decoder", dec)]:
                return None  # the form switches to a fitting method, which recounts
            try:
                return counter.count(MixPEFTSpec(backbone, preset, enc, dec, bitfit, params),
                                     config)
            except PetiteError as err:
                return err

        self._count_task = Task(body, desc="counting weights", on_yield=self.form.show_fits,
                                on_done=self._counted, progress=False, torch=True)
        self._count_task.start()

    def _counted(self, result) -> None:
        self._count_task = None
        if self._pending is not None:
            self._start_count()
        elif isinstance(result, PetiteError):
            self.form.trainable.setText(f"trains: - ({result})")
        elif isinstance(result, tuple):
            self.form.trainable.setText(trainable_line(*result))
        elif isinstance(result, Failure):
            self.form.trainable.setText("trains: - (see the notification)")

    # -- runs ----------------------------------------------------------------------------
    def _request(self):
        """The request the form and the session describe (ConfigError when incomplete)."""
        from napari_petite.training.job import JobRequest

        session = self.session
        scanner = session.target_scanner()
        if scanner is None:
            raise ConfigError("Open a dataset and choose a target scanner in 'Scanner data' "
                              "first (or press its Sample dataset button).")
        base_source = (self.chooser.card or {}).get("source")
        if scanner.id == base_source or (session.source == session.target
                                         and len(session.dataset.scanners) > 1):
            raise ConfigError(f"The source and the target scanner are both {scanner.id}: the "
                              "base was pre-trained there, so there is nothing to adapt to; "
                              "choose your scanner as the target in 'Scanner data'.")
        if session.split is None:
            raise ConfigError(f"The subjects of {scanner.id} cannot be split into training, "
                              "validation and test sets; adjust the counts in 'Scanner data'.")
        if self.chooser.path is None:
            raise ConfigError("Choose a base checkpoint (.safetensors) pre-trained on the "
                              "source scanner.")
        self.run_folder = new_run_folder(session.target)
        return JobRequest(scanner, session.split, self.settings.config(self.run_folder),
                          spec=self.spec(), base=self.chooser.path,
                          backbone=self.chooser.network()[0], source=session.source)

    def start(self, resume: str | Path | None = None) -> None:
        """Start a run from the form, or continue the saved run in folder ``resume`` with its
        own settings; errors become notifications and the dock stays usable."""
        if not self.is_idle:
            return
        try:
            if resume is None:
                request, history = self._request(), None
            else:
                self.run_folder = Path(resume).expanduser()
                request, history = read_saved_run(self.run_folder)
                self._show_request(request)
        except PetiteError as err:
            notify_failure(err)
            return
        self._launch(request, history)

    def _show_request(self, request) -> None:
        """Put a saved run's own base, methods and settings into the forms."""
        self.chooser.set_base(request.base)
        if request.spec is not None:
            self.form.show_spec(request.spec)
        self.settings.show_config(request.config)

    def _launch(self, request, history) -> None:
        from napari_petite.io.atomic import write_text

        folder = self.run_folder
        if request.resume is None:  # the description first: a crash must stay resumable
            write_text(folder / RUN_FILE, json.dumps(request.to_dict(), indent=2) + "\n",
                       overwrite=True)
        self.task = Task(lambda control: self._body(request, control), desc="fine-tuning",
                         total=request.config.steps, on_yield=self.run.on_event,
                         on_done=self._finished, torch=True)
        what = describe_run(request, self.chooser.card)
        config = request.config
        self.run.begin(self.task, history, what=what,
                       select=(config.select, config.select_tolerance_pct))
        self.run.status.setText("Loading the base model and the target subjects…")
        self._set_running()
        self.session.set_running(what)
        self.task.start()

    @staticmethod
    def _body(request, control):
        """The worker: build the run, drive it, hand back the adapted model (no Qt)."""
        import torch

        from napari_petite.training.job import build_run

        # leave the GUI a core (a second training thread doubles the GUI's p99 stall)
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        run = build_run(request)
        result = yield from run.trainer.run(control)
        folder = request.config.checkpoint_dir
        training = {**run.record(result), "gui_run": str(folder)}
        trained = TrainedModel(run.model.cpu(), run.spec, run.base_path, run.base_sha256,
                               training, run.metrics(result), request.config.seed)
        if not result.stopped and folder:  # opened again, a finished run is loaded as it is
            from napari_petite.peft.bundle import save_adapter

            save_adapter(run.model, run.spec, Path(folder) / FINISHED,
                         base_sha256=run.base_sha256, training=training,
                         metrics=trained.metrics, seed=request.config.seed, overwrite=True)
        return trained

    def _finished(self, result) -> None:
        from napari_petite.io.atomic import discard_dir

        self.run.end()
        self.session.set_running(None)
        if isinstance(result, TrainedModel):
            self._report(result)
        elif isinstance(result, Failure):
            self.run.status.setText(f"Failed: {result.message}")
        else:
            self.run.status.setText("Stopped before the first step; nothing changed.")
        folder = self.run_folder
        if folder is not None and not (is_finished(folder) or is_resumable(folder)):
            discard_dir(folder, within=runs_dir())  # nothing to open: not listed, not kept
        self._set_idle()

    def _report(self, result: TrainedModel) -> None:
        """Say how the run ended; keep the model under its own name if it improved."""
        best, t = result.metrics.get("val_best"), result.training
        how = "Stopped" if t.get("stopped") else "Finished"
        where = f" Saved run: {self.run_folder.name} (Open saved run… continues it)." \
            if how == "Stopped" else ""
        if not result.improved:
            validated = any(v.get("step", 0) > 0 for v in result.metrics.get("val_history")
                            or [])
            why = ("no validated step beat the model it started from" if validated else
                   "no step was validated after the start (validation every "
                   f"{t['config'].get('val_every')} steps), so the model kept is the one it "
                   "started from")
            self.run.status.setText(f"{how} after {t['steps_done']} steps: {why}; nothing "
                                    f"new was added (the model list is unchanged).{where}")
            return
        name = self.session.add_model(result)
        val = self._kept_text(best)
        self.run.status.setText(f"{how} after {t['steps_done']} steps in {t['seconds']:.0f} s"
                                f"{val}. Kept as \"{name}\" for 'Reconstruct & compare'."
                                f"{where}")

    def _kept_text(self, best: dict | None) -> str:
        """The kept step against the start, PSNR and fidelity, as the curves read them."""
        curves = self.run.curves
        gain = curves.gain_text()
        if not gain:
            return f"; validation {best['psnr']:.2f} dB at step {best['step']}" if best else ""
        return gain.replace(" · ", "; ", 1) + curves.quant_text()

    def _open_dialog(self) -> None:
        runs = saved_runs()
        if not runs:
            notify_failure(ConfigError("No saved run yet: a run is saved when it finishes or "
                                       "is stopped after its first step."))
            return
        labels = [text for _, text in runs]
        choice, ok = QInputDialog.getItem(self, "Open saved run", "Finished runs are loaded, "
                                          "stopped ones continue:", labels, 0, False)
        if ok and choice in labels:
            self.open_run(runs[labels.index(choice)][0])

    def open_run(self, folder) -> None:
        """Open a saved run: a finished one is loaded as it ended (its adapter, curves and
        settings; nothing is retrained), a stopped one continues from its last step."""
        folder = Path(folder).expanduser()
        if not is_finished(folder):
            self.start(resume=folder)
            return
        if not self.is_idle:
            return
        try:
            request, _ = read_saved_run(folder) if is_resumable(folder) else \
                (self._finished_request(folder), None)
        except PetiteError as err:
            notify_failure(err)
            return
        self.run_folder = folder
        self._show_request(request)
        base = request.base
        self.task = Task(lambda control: self._load_finished(folder, base),
                         desc="opening a finished run", on_done=self._opened, torch=True)
        self._set_running(stoppable=False)
        self.run.status.setText(f"Opening the finished run {folder.name}…")
        self.task.start()

    @staticmethod
    def _finished_request(folder: Path):
        from napari_petite.training.job import JobRequest

        try:
            doc = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise CheckpointError(f"{folder} holds no run description ({RUN_FILE}); choose "
                                  "another saved run.") from None
        return JobRequest.from_dict(doc)

    def _load_finished(self, folder: Path, base):
        from napari_petite.peft.bundle import read_card

        card = read_card(folder / FINISHED)
        trained = yield from self._load_body(folder / FINISHED, base, card)
        trained.bundle = None  # a run of this tool, not a bundle from elsewhere
        trained.training = {**trained.training, "gui_run": str(folder)}
        return trained

    def _opened(self, result) -> None:
        if isinstance(result, TrainedModel):
            t, metrics = result.training, result.metrics
            config = t.get("config") or {}
            self.run.show_history(t.get("losses") or [], metrics.get("val_history") or [],
                                  select=(config.get("select", "psnr"),
                                          config.get("select_tolerance_pct", 1.0)))
            name = self.session.add_model(result)
            val = self._kept_text(metrics.get("val_best"))
            self.run.status.setText(f"Finished run {self.run_folder.name} opened (finished "
                                    f"after {t.get('steps_done')} steps{val}; not "
                                    f"retrained). Kept as \"{name}\".")
        elif isinstance(result, Failure):
            self.run.status.setText(f"Failed: {result.message}")
        self._set_idle()

    def stop(self) -> None:
        self.run.stop()

    def toggle_pause(self) -> None:
        self.run.toggle_pause()

    def _set_running(self, stoppable: bool = True) -> None:
        """Busy: the forms say what runs and cannot be changed under it."""
        self.run.set_running(True, stoppable=stoppable)
        for w in (self.save_button, self.load_button, self.chooser, self.import_base,
                  self.form, self.settings):
            w.setEnabled(False)

    def _set_idle(self) -> None:
        if not self.is_idle:
            return
        self.run.set_running(False)
        for w in (self.chooser, self.import_base, self.form, self.settings, self.load_button):
            w.setEnabled(True)
        self.save_button.setEnabled(self.session.trained is not None)

    # -- adapter bundles -----------------------------------------------------------------
    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Adapter bundle folder to create", "adapter")
        if path:
            self.save_adapter(path)

    def save_adapter(self, folder, overwrite: bool = False, model: TrainedModel | None = None):
        """Write ``model`` (default: the newest) as an adapter bundle (a small folder)."""
        from napari_petite.peft.bundle import save_adapter

        trained = model or self.session.trained
        if trained is None:
            notify_failure(ConfigError("Nothing to save yet: train (or load) an adapter first."))
            return None
        try:
            out = save_adapter(trained.model, trained.spec, folder,
                               base_sha256=trained.base_sha256, training=trained.training,
                               metrics=trained.metrics, seed=trained.seed, overwrite=overwrite,
                               inputs=self.session.inputs())
        except PetiteError as err:
            notify_failure(err)
            return None
        trained.bundle = out
        self.run.status.setText(f"Adapter \"{trained.name}\" saved to {out}.")
        return out

    def _load_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Adapter bundle folder")
        if folder:
            self.load_adapter(folder)

    def load_adapter(self, folder) -> None:
        """Load a bundle onto the chosen base (in a worker); refused at once when it was
        trained on another base; it joins the model list under its own name."""
        from napari_petite.peft.bundle import read_card

        if not self.is_idle:
            return
        try:
            base, card = self.chooser.path, read_card(folder)
            if base is None:
                raise ConfigError("Choose the base checkpoint the adapter was trained from "
                                  "before loading the adapter.")
            self._check_same_base(card, folder)
        except PetiteError as err:
            notify_failure(err)
            return
        self.task = Task(lambda control: self._load_body(folder, base, card),
                         desc="loading adapter", on_done=self._loaded, torch=True)
        self._set_running(stoppable=False)
        self.task.start()

    def _check_same_base(self, card: dict, folder) -> None:
        base_card = self.chooser.card or {}
        if card["spec"].get("backbone") != base_card.get("backbone") or (
                card.get("base_sha256") and card["base_sha256"] != base_card.get("sha256")):
            raise CheckpointError(
                f"The adapter in {folder} was trained on a {card['spec'].get('backbone')} base "
                f"(sha256 {str(card.get('base_sha256'))[:12]}…), not on the chosen "
                f"{base_card.get('backbone')} base; choose its base first.")

    @staticmethod
    def _load_body(folder, base, card):
        from napari_petite.peft.bundle import load_adapter
        from napari_petite.training.job import load_base

        model, _, sha = load_base(base, card["spec"]["backbone"])
        yield "loaded base"
        spec = load_adapter(model, folder, base_sha256=sha)
        return TrainedModel(model, spec, base, sha, card.get("training") or {},
                            card.get("metrics") or {}, int(card.get("seed") or 0),
                            bundle=Path(folder))

    def _loaded(self, result) -> None:
        if isinstance(result, TrainedModel):
            name = self.session.add_model(result, loaded=True)
            self.run.status.setText(f"Loaded adapter {result.bundle} as \"{name}\".")
        self._set_idle()

    # -- closing -------------------------------------------------------------------------
    def _watch_main_window(self) -> None:
        """Stop training before napari's main window goes away (no dangling worker)."""
        from qtpy.QtCore import QEvent, QObject

        try:
            qt_window = unwrap(self.viewer).window._qt_window
        except AttributeError:
            return
        dock = self

        class _CloseFilter(QObject):
            def eventFilter(self, obj, event):
                if event.type() == QEvent.Type.Close:
                    dock.shutdown()
                return False

        self._close_filter = _CloseFilter(self)
        qt_window.installEventFilter(self._close_filter)

    def _tasks(self) -> tuple[Task | None, ...]:
        return (self.task, self._count_task, self._recipe_task, self.import_base.task)

    def shutdown(self, timeout: float = 30.0) -> None:
        self._pending = None
        super().shutdown(timeout)
        self._count_task = self._recipe_task = None
