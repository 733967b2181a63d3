"""The three napari docks in a real viewer (Xvfb): load -> choose -> train -> stop ->
reconstruct -> compare -> export, plus the error paths and closing napari mid-training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_subject, write_nifti

pytestmark = pytest.mark.gui
#: screenshots and reports the GUI tests leave for a person to look at
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
ARTIFACTS.mkdir(exist_ok=True)
SHAPE_XYZ = (34, 33, 32)  # z, y, x = 32, 33, 34 >= the 32^3 smoke window


@pytest.fixture
def gui_dataset(tmp_path):
    """Source scanner with one subject, target with three (train / validate / test)."""
    root = tmp_path / "data"
    for scanner, n in (("src", 1), ("tgt", 3)):
        (root / scanner).mkdir(parents=True)
        (root / scanner / "scanner.json").write_text(json.dumps({"name": f"Scanner {scanner}"}))
        for k in range(n):
            folder = make_subject(root / scanner / f"sub-{k:02d}", seed=k, shape_xyz=SHAPE_XYZ)
            labels = np.zeros(SHAPE_XYZ, np.int16)
            labels[8:26, 8:25, 8:24] = 1
            labels[14:20, 14:20, 12:20] = 2
            write_nifti(folder / "labels.nii.gz", labels)
            meta = json.loads((folder / "meta.json").read_text())
            meta["labels"] = {"1": "grey matter", "2": "lesion"}
            (folder / "meta.json").write_text(json.dumps(meta))
    return root


def _base(tmp_path, backbone: str):
    import torch

    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides

    torch.manual_seed(0)
    model = build_model(backbone, "small", **smoke_overrides(backbone))
    return save_checkpoint(model, tmp_path / f"{backbone}-base.safetensors",
                           extra={"source": "src"})


@pytest.fixture
def unetr_base(tmp_path):
    return _base(tmp_path, "unetr")


def _docks(viewer):
    _, data = viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    _, tune = viewer.window.add_plugin_dock_widget("napari-petite", "Fine-tune")
    _, comp = viewer.window.add_plugin_dock_widget("napari-petite", "Reconstruct & compare")
    return data, tune, comp


def _errors():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]


def _pick(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def _load(qtbot, viewer, data, gui_dataset, subject="sub-02"):
    from qtpy.QtCore import Qt

    assert data.open_dataset(gui_dataset)
    data.target.setCurrentText("tgt")
    top = data.tree.findItems("tgt", Qt.MatchFlag.MatchExactly)[0]
    item = next(top.child(i) for i in range(top.childCount()) if top.child(i).text(0) == subject)
    data.tree.setCurrentItem(item)
    data.load_selected()
    qtbot.waitUntil(lambda: f"tgt/{subject} low" in viewer.layers and data.is_idle,
                    timeout=20_000)  # every layer added (one per turn of the event loop)
    return viewer.layers[f"tgt/{subject} low"]


def drawn(qtbot, comp) -> None:
    """Wait until the compare dock's work is done and its comparison is drawn (it draws in
    steps, one per turn of the event loop, so the GUI never stalls)."""
    qtbot.waitUntil(lambda: comp.settled, timeout=60_000)


def written(qtbot, task):
    """The path an export (written in a worker) gave, or None when it was refused."""
    if task is None:
        return None
    qtbot.waitUntil(lambda: not task.running, timeout=60_000)
    return task.result if isinstance(task.result, Path) else None


def _base_reconstruction(make_napari_viewer, qtbot, gui_dataset, unetr_base):
    """A viewer with the docks, tgt/sub-02 loaded and reconstructed with the base model."""
    viewer = make_napari_viewer()
    data, tune, comp = _docks(viewer)
    low = _load(qtbot, viewer, data, gui_dataset)
    tune.set_base(unetr_base)
    comp.model.setCurrentIndex(comp.model.findData("base model"))
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.recon_layer is not None and comp.is_idle, timeout=60_000)
    drawn(qtbot, comp)
    return viewer, comp, low


def trained_viewer(make_napari_viewer, qtbot, gui_dataset, base, *, steps, val_every):
    """A viewer with the docks, tgt/sub-02 loaded and a run of ``steps`` finished."""
    viewer = make_napari_viewer()
    data, tune, comp = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    _setup_training(tune, base, steps=steps, val_every=val_every)
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=120_000)
    return viewer, data, tune, comp


def _setup_training(tune, base, steps=2000, val_every=3):
    tune.set_base(base)
    settings = tune.settings
    settings.steps.setValue(steps)
    settings.val_every.setValue(val_every)
    settings.batch.setValue(1)
    settings.device.setCurrentText("cpu")


def test_full_flow(make_napari_viewer, qtbot, gui_dataset, unetr_base, tmp_path, monkeypatch):
    import napari_petite.training.engine as engine
    from napari_petite._widgets.exports import details as report_details
    from napari_petite._widgets.finetune_dock import trainable_line
    from napari_petite._widgets.state import short_name
    from napari_petite.io.dataset import discover
    from napari_petite.io.nifti import read_volume
    from napari_petite.models.checkpoint import load_checkpoint
    from napari_petite.peft.apply import apply_spec

    viewer = make_napari_viewer()
    data, tune, comp = _docks(viewer)

    # load: scale = spacing, contrast linked, the low-count scan is the one shown
    low = _load(qtbot, viewer, data, gui_dataset)
    subject = discover(gui_dataset).scanner("tgt").subject("sub-02")
    full = viewer.layers["tgt/sub-02 full"]
    for layer in (low, full, viewer.layers["tgt/sub-02 truth"]):
        assert np.allclose(layer.scale, subject.spacing)
    drawn(qtbot, comp)  # the comparison shows the scans at once: low | full, radiological
    assert low.visible and full.visible and not viewer.layers["tgt/sub-02 truth"].visible
    assert comp.comparison.shown == [low, full] and viewer.canvas.grid.enabled
    assert data.session.split.test == ["sub-02"] and data.session.split.train == ["sub-00"]
    full.contrast_limits = (1.0, 777.0)
    assert tuple(low.contrast_limits) == pytest.approx((1.0, 777.0))

    # choose methods: the line equals apply_spec's report on the real base network
    _setup_training(tune, unetr_base)
    form = tune.form
    for enc, dec, bitfit in (("lora", "ssf", True), ("adapter", "ia3", False),
                             ("full", "none", False)):
        _pick(form.encoder, enc)
        _pick(form.decoder, dec)
        form.bitfit.setChecked(bitfit)
        qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
        model, _ = load_checkpoint(unetr_base)
        report = apply_spec(model, tune.spec())
        assert form.trainable.text() == trainable_line(report.n_trainable, report.n_total,
                                                       report.percent)
    _pick(form.decoder, "vpt")  # does not fit a CNN decoder: the dock switches away
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
    assert form.decoder.currentData() != "vpt"
    vpt_row = form.decoder.findData("vpt")
    assert not form.decoder.model().item(vpt_row).isEnabled()  # CNN decoder: no VPT
    assert "convolutional" in form.decoder.model().item(vpt_row).toolTip()
    form.reset("unetr")  # the recommended recipe, marked
    assert (form.encoder.currentData(), form.decoder.currentData()) == ("lora", "ssf")
    assert form.recommended.text().startswith("✓")
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)

    # start -> step-0 point and loss points -> stop within one step -> idle
    reads = {}

    class SpyControl(engine.Control):
        checks = 0

        @property
        def stopped(self):
            value = super().stopped
            if not value:
                SpyControl.checks += 1
            return value

        def stop(self):
            reads["at_stop"] = SpyControl.checks
            super().stop()

    import napari_petite._widgets.tasks as tasks

    monkeypatch.setattr(tasks, "Control", SpyControl)
    tune.settings.val_every.setValue(0)  # every step counts: the run is kept however it goes
    tune.start()
    assert not tune.run.start_button.isEnabled()
    curves = tune.run.curves
    qtbot.waitUntil(lambda: len(curves.loss_values) >= 4, timeout=60_000)
    qtbot.waitUntil(lambda: curves.redraws > 0, timeout=60_000)
    tune.stop()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=30_000)
    trained = tune.session.trained
    assert trained is not None and trained.training["stopped"]
    assert trained.training["steps_done"] <= reads["at_stop"]  # the step under way, no more
    assert tune.run.start_button.isEnabled() and not tune.run.stop_button.isEnabled()
    assert curves.loss_curve.getData()[0] is not None

    # the stopped run left a resumable checkpoint at its last step; opening it continues it
    # with its own budget (not the form's) and its curves
    done = trained.training["steps_done"]
    saved = json.loads((tune.run_folder / "resume.json").read_text())
    assert saved["step"] == done and tune.run_folder.name in tune.run.status.text()
    tune.settings.steps.setValue(5)  # the form says 5; the run's own budget is 2000
    tune.start(resume=tune.run_folder)
    assert tune.settings.steps.value() == 2000  # the form shows what runs
    qtbot.waitUntil(lambda: len(curves.loss_values) >= done + 2, timeout=60_000)
    assert curves.loss_values[:done] == pytest.approx(trained.training["losses"])
    tune.stop()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    resumed = tune.session.trained
    assert resumed is not trained and resumed.name != trained.name
    assert resumed.training["steps_done"] > done
    assert resumed.training["losses"][:done] == trained.training["losses"]

    # save and load the adapter bundle: it joins the model list under its own name
    bundle = tune.save_adapter(tmp_path / "adapter")
    assert (bundle / "adapter.safetensors").is_file()
    tune.load_adapter(bundle)
    qtbot.waitUntil(lambda: tune.is_idle, timeout=30_000)
    names = [m.name for m in tune.session.models]
    assert len(names) == len(set(names)) == 3 and tune.session.trained.bundle == bundle
    listed = [comp.model.itemText(i) for i in range(comp.model.count())]
    assert listed == ["base model", *names]

    # reconstruct with the base, then with the loaded adapter: two layers, two columns
    assert comp.low.currentText() == low.name and comp.full.currentText() == full.name
    assert comp.model.currentData() == names[-1]
    _pick(comp.model, "base model")
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.recon_layer is not None and comp.is_idle, timeout=60_000)
    base_layer = comp.recon_layer
    _pick(comp.model, names[-1])
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.recon_layer.name != base_layer.name and comp.is_idle,
                    timeout=60_000)
    drawn(qtbot, comp)
    recon = comp.recon_layer
    assert base_layer.name in viewer.layers and recon.name == f"reconstructed · {names[-1]}"
    assert np.allclose(recon.scale, low.scale)
    assert np.allclose(recon.metadata["affine"], low.metadata["affine"])
    assert recon.metadata["source_path"] is None and recon.data.shape == low.data.shape
    assert viewer.canvas.grid.enabled
    # base and adapted of the same scan sit side by side: low | full over base | adapted
    assert comp.panels() == [low, base_layer, recon, full]
    assert tuple(viewer.canvas.grid.shape) in ((2, 2), (1, 4))
    assert all(lay.visible for lay in comp.panels())
    header = [comp.table.horizontalHeaderItem(i) for i in range(comp.table.columnCount())]
    assert [h.toolTip() for h in header] == ["low-count", "base model", names[-1]]
    assert [h.text() for h in header] == ["low-count", "base model", "bundle adapter"]
    labels = [comp.table.verticalHeaderItem(i).text() for i in range(comp.table.rowCount())]
    assert "PSNR head (dB)" in labels and "bias lesion (%)" in labels
    recon.contrast_limits = (2.0, 555.0)
    assert tuple(full.contrast_limits) == pytest.approx((2.0, 555.0))
    comp.show_difference()  # computed in a worker
    qtbot.waitUntil(lambda: comp.comparison.mode == "difference", timeout=30_000)
    drawn(qtbot, comp)
    diff = next(lay for lay in viewer.layers if lay.name.startswith("difference"))
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0 and diff.colormap.name == "RdBu_r"
    comp.show_overlay()
    drawn(qtbot, comp)
    assert recon.blending == "additive" and not viewer.canvas.grid.enabled

    # export round trip; never over an input
    out = written(qtbot, comp.export_nifti(tmp_path / "out" / "recon.nii.gz"))
    back, src = read_volume(out), read_volume(subject.low)
    assert np.allclose(back.affine, src.affine) and np.allclose(back.data, recon.data)
    n_errors = len(_errors())
    assert written(qtbot, comp.export_nifti(subject.low, overwrite=True)) is None
    assert len(_errors()) == n_errors + 1
    assert read_volume(subject.low).data.shape == src.data.shape  # input untouched
    reports = []
    for name in ("report.png", "report.pdf"):  # drawn in a worker: the GUI stays live
        reports.append(written(qtbot, comp.export_report(tmp_path / "out" / name)))
    png, pdf = reports
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    # the chart's page names the scan, the base and every adapter (and, always, that it is
    # for research only: training.report.DISCLAIMER)
    details = report_details(comp.session, low)
    assert details["scan"] == "tgt/sub-02" and "pre-trained on src" in details["base model"]
    assert all(short_name(name) in details and name in details[short_name(name)]
               for name in names)
    assert not any(str(tmp_path) in v or "/" + "tmp" in v for v in details.values())
    shutil.copy(png, ARTIFACTS / "report-full-flow.png")

    # batch export of the target's test subjects, with the library's metrics
    comp.batch_export(tmp_path / "batch")
    qtbot.waitUntil(lambda: (tmp_path / "batch" / "tgt" / "metrics.json").is_file()
                    and comp.is_idle, timeout=60_000)
    doc = json.loads((tmp_path / "batch" / "tgt" / "metrics.json").read_text())
    assert [r["subject"] for r in doc["subjects"]] == ["sub-02"]
    assert doc["model"].startswith(names[-1])
    batch = read_volume(tmp_path / "batch" / "tgt" / "sub-02_reconstructed.nii.gz")
    assert np.allclose(batch.affine, src.affine)


def test_a_run_stopped_before_it_improved_keeps_the_previous_model(
        make_napari_viewer, qtbot, gui_dataset, unetr_base):
    """Stop right after Start: the model list (and the compare dock's choice) stays as it
    was; the old dock replaced the adapted model with an untrained copy under the same
    label."""
    _, _, tune, comp = trained_viewer(make_napari_viewer, qtbot, gui_dataset,
                                      unetr_base, steps=3, val_every=0)
    first = tune.session.trained
    assert first is not None and comp.model.currentData() == first.name
    _setup_training(tune, unetr_base, steps=100_000, val_every=1)
    tune.start()
    tune.stop()  # at once: the run stops before it can improve on its start
    qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    assert [m.name for m in tune.session.models] == [first.name]
    assert tune.session.trained is first and comp.model.currentData() == first.name
    assert "nothing" in tune.run.status.text()


def test_only_runs_that_beat_their_start_join_the_model_list(qtbot):
    """The rule behind the dock: a run whose best validation is step 0 (the model it started
    from) adds nothing; runs and bundles get names of their own, never reused."""
    from pathlib import Path
    from types import SimpleNamespace

    from napari_petite._widgets.state import Session, TrainedModel

    class Viewer:  # the session only keeps a weak reference to its viewer
        pass

    viewer = Viewer()
    spec = SimpleNamespace(label="enc LoRA + dec SSF + BitFit", encoder="lora", decoder="ssf",
                           bitfit=True)

    def model(best_step, steps=5, **kw):
        metrics = {} if best_step is None else {"val_best": {"step": best_step, "psnr": 30.0}}
        return TrainedModel(None, spec, None, "0" * 64, {"steps_done": steps,
                                                          "target": "tgt"}, metrics, **kw)

    assert not model(0).improved and model(3).improved
    assert model(None).improved and not model(None, steps=0).improved
    session = Session(viewer)
    names = [session.add_model(model(3)), session.add_model(model(4)),
             session.add_model(model(2, bundle=Path("/x/ad")), loaded=True),
             session.add_model(model(2, bundle=Path("/y/ad")), loaded=True)]
    assert names == ["run 1: low-rank updates + scale and shift + biases on tgt",
                     "run 2: low-rank updates + scale and shift + biases on tgt", "bundle ad",
                     "bundle ad (2)"]


def test_backbone_switch_takes_its_base_and_refuses_other_adapters(
        make_napari_viewer, qtbot, gui_dataset, unetr_base, tmp_path):
    from napari_petite.training.job import shipped_base

    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    _setup_training(tune, unetr_base, steps=2, val_every=0)
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle and tune.session.trained is not None, timeout=60_000)
    bundle = tune.save_adapter(tmp_path / "unetr-adapter")
    tune.chooser.backbone.setCurrentText("cvtgan")
    assert tune.chooser.path == shipped_base("cvtgan") and tune.session.base_path == \
        shipped_base("cvtgan")
    assert tune.chooser.info.text().startswith("cvtgan small")
    assert tune.form.encoder.currentData() == "vpt"  # CVT-GAN's recommended recipe
    tune.set_base(unetr_base)  # a checkpoint brings its own backbone with it
    assert tune.chooser.backbone.currentText() == "unetr"
    tune.chooser.backbone.setCurrentText("cvtgan")
    n_errors, n_models = len(_errors()), len(tune.session.models)
    tune.load_adapter(bundle)
    assert tune.is_idle and len(_errors()) == n_errors + 1
    assert "unetr base" in _errors()[-1] and "choose its base first" in _errors()[-1]
    assert len(tune.session.models) == n_models


def test_bad_base_notifies_and_dock_stays_usable(make_napari_viewer, qtbot, gui_dataset,
                                                  unetr_base, tmp_path):
    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    bad = tmp_path / "broken" / unetr_base.name
    bad.parent.mkdir()
    blob = bytearray(unetr_base.read_bytes())
    blob[-100:] = b"\0" * 100
    bad.write_bytes(bytes(blob))
    for sib in unetr_base.parent.glob(unetr_base.stem + "*.json"):
        (bad.parent / sib.name).write_bytes(sib.read_bytes())
    _setup_training(tune, bad, steps=3, val_every=0)
    n_errors = len(_errors())
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle and len(_errors()) > n_errors, timeout=30_000)
    assert "sha256" in _errors()[-1] and "Traceback" not in _errors()[-1]
    assert tune.run.start_button.isEnabled() and tune.session.trained is None
    # usable again: a good base trains
    tune.set_base(unetr_base)
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle and tune.session.trained is not None, timeout=60_000)
    assert tune.session.trained.training["steps_done"] == 3


def test_closing_viewer_during_training_stops_through_the_control(
        make_napari_viewer, qtbot, gui_dataset, unetr_base):
    """Closing napari stops the run like Stop does: it ends on its own at-stop checkpoint
    (not the last periodic one), which then continues with the run's own budget."""
    from napari_petite._widgets.run_panel import DISPLAY_MS

    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    _setup_training(tune, unetr_base, steps=100_000, val_every=0)
    tune.start()
    task, folder = tune.task, tune.run_folder
    curves = tune.run.curves
    qtbot.waitUntil(lambda: len(curves.loss_values) >= 2, timeout=60_000)
    tune.toggle_pause()
    assert tune.run.pause_button.text() == "Continue"
    qtbot.waitUntil(lambda: tune.run.status.text().startswith("Paused"), timeout=30_000)
    n_paused = len(curves.loss_values)
    qtbot.wait(DISPLAY_MS + 300)  # one display refresh: it must not hide "Paused"
    assert len(curves.loss_values) == n_paused  # no steps while paused
    assert tune.run.status.text().startswith("Paused")
    tune.toggle_pause()
    qtbot.waitUntil(lambda: len(curves.loss_values) > n_paused + 1, timeout=30_000)
    viewer.close()
    assert task.shutdown(timeout=30)  # the thread has left the training loop
    assert task.control.stopped
    # the at-stop checkpoint: the steps done when napari closed (there was none before
    # step 25 when closing quit the worker instead of stopping the run)
    saved = json.loads((folder / "resume.json").read_text())
    assert saved["step"] >= n_paused + 2 and len(saved["losses"]) == saved["step"]
    assert saved["config"]["steps"] == 100_000
    qtbot.wait(200)  # late signals (if any) must not reach deleted widgets

    from napari_petite._widgets.finetune_dock import read_saved_run

    request, (losses, _vals) = read_saved_run(folder)
    assert request.config.steps == 100_000 and request.base == str(unetr_base)
    assert len(losses) == saved["step"]


def test_closing_the_dock_stops_training(make_napari_viewer, qtbot, gui_dataset, unetr_base):
    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    _setup_training(tune, unetr_base, steps=100_000, val_every=0)
    tune.start()
    task = tune.task
    qtbot.waitUntil(lambda: len(tune.run.curves.loss_values) >= 1, timeout=60_000)
    viewer.window.remove_dock_widget(tune)  # what the dock's close button does
    assert task.control.stopped
    assert task.shutdown(timeout=30)
    qtbot.wait(200)


@pytest.mark.parametrize("size", [(1920, 1080), (1366, 768)])
def test_petite_gui_window_fits_the_screen(make_napari_viewer, qtbot, gui_dataset, size,
                                           tmp_path):
    """`petite gui`'s window: its docks share one area as tabs and scroll, so the window's
    minimum size fits a laptop screen (it needed 1342-1501 px of height before); the first
    step's tab is in front and the subject list says what each target subject is for."""
    from napari_petite._widgets.window import DOCKS, open_viewer

    viewer, docks = open_viewer(data=gui_dataset, sample=False, viewer=make_napari_viewer())
    try:
        window = viewer.window._qt_window
        window.resize(*size)
        window.show()
        qtbot.wait(300)
        hint = window.minimumSizeHint()
        assert hint.width() <= size[0] and hint.height() <= size[1], (hint.width(),
                                                                      hint.height())
        assert window.height() <= size[1]
        assert docks[DOCKS[0]].isVisible() and docks[DOCKS[0]].visibleRegion().boundingRect()\
            .height() > 200  # in front, not squeezed
        tree = docks["Scanner data"].tree
        top = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                   if tree.topLevelItem(i).text(0) == "tgt")
        assert [top.child(k).text(3) for k in range(top.childCount())] == \
            ["train", "validate", "test"]
        marks = {tree.topLevelItem(i).text(0): tree.topLevelItem(i).text(3)
                 for i in range(tree.topLevelItemCount())}
        assert marks == {"src": "source", "tgt": "target"}
        assert "…" not in top.child(0).text(2) and tree.columnWidth(2) >= \
            tree.fontMetrics().horizontalAdvance(top.child(0).text(2))  # whole spacing shown
        window.grab().save(str(tmp_path / f"gui-{size[0]}x{size[1]}.png"))
    finally:
        viewer.window._qt_window.hide()


def test_comparison_is_labelled_oriented_and_warns_on_training_subjects(
        make_napari_viewer, qtbot, gui_dataset, unetr_base):
    viewer = make_napari_viewer()
    data, tune, comp = _docks(viewer)
    low = _load(qtbot, viewer, data, gui_dataset, subject="sub-00")  # a training subject
    _setup_training(tune, unetr_base, steps=2, val_every=0)
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle and tune.session.trained is not None, timeout=60_000)
    comp.low.setCurrentText(low.name)
    comp.reconstruct()
    qtbot.waitUntil(lambda: comp.recon_layer is not None and comp.is_idle, timeout=60_000)
    drawn(qtbot, comp)
    assert "sub-00 is a subject this model trained on" in comp.status.text()
    shown = [lay for lay in viewer.layers if lay.visible]
    assert len(shown) == 3 and viewer.canvas.grid.enabled
    assert all(lay.name_overlay.visible and lay.colorbar.visible for lay in shown)
    from napari_petite._widgets.views import UNITS_KEY

    assert viewer.canvas.overlays[UNITS_KEY].text == "Bq/mL"  # beside every colour bar
    drawn(qtbot, comp)
    comp.views.orientation.setCurrentText("coronal")
    drawn(qtbot, comp)
    assert tuple(viewer.dims.order) == (1, 0, 2)
    comp.views.mip.setChecked(True)
    drawn(qtbot, comp)
    assert all(lay.projection_mode == "max" for lay in shown)
    assert viewer.dims.thickness[1] > 10  # through the whole volume
    comp.views.mip.setChecked(False)
    drawn(qtbot, comp)
    assert all(lay.projection_mode == "none" for lay in shown)


def test_roi_statistics_on_low_reconstruction_and_full(make_napari_viewer, qtbot, gui_dataset,
                                                       unetr_base):
    """Pick the subject's "lesion" label: SUVmax / SUVmean / SUVpeak / volume for the
    low-count scan, the reconstruction and the full-count scan, each by the library's
    definition; a painted Labels layer and drawn shapes work the same way."""
    from napari_petite.training.roi import roi_stats

    viewer, comp, low = _base_reconstruction(make_napari_viewer, qtbot, gui_dataset, unetr_base)
    roi = comp.roi
    roi.source.setCurrentText("tgt/sub-02 labels")
    assert [roi.value.itemText(i) for i in range(roi.value.count())] == ["grey matter",
                                                                         "lesion"]
    roi.value.setCurrentIndex(roi.value.findData(2))
    results = roi.measure()
    full = viewer.layers["tgt/sub-02 full"]
    assert list(results) == [low.name, comp.recon_layer.name, full.name]
    mask = np.asarray(viewer.layers["tgt/sub-02 labels"].data) == 2
    expected = roi_stats(np.asarray(full.data), mask, tuple(full.scale))
    assert results[full.name]["max"] == pytest.approx(expected["max"])
    assert results[full.name]["peak"] == pytest.approx(expected["peak"])
    assert results[full.name]["volume_ml"] == pytest.approx(mask.sum() * np.prod(full.scale)
                                                            / 1000)
    assert roi.table.rowCount() == 3 and roi.table.item(0, 3).text()
    heads = [roi.table.horizontalHeaderItem(j).text() for j in range(4)]
    assert heads == ["max", "mean", "peak", "volume"]  # short: the units stand above
    assert roi.units.text() == f"activity in {results[full.name]['units']}; volume in mL"
    shapes = viewer.add_shapes([[[16, 10, 10], [16, 10, 20], [16, 20, 20], [16, 20, 10]]],
                               ndim=3, scale=low.scale)
    roi.source.setCurrentText(shapes.name)
    drawn = roi.measure()
    assert drawn[low.name]["voxels"] == 121  # an 11 x 11 square on slice 16


def test_sample_dataset_button_simulates_with_progress_then_opens(make_napari_viewer, qtbot,
                                                                  monkeypatch):
    import napari_petite._widgets.data_dock as data_dock

    monkeypatch.setattr(data_dock, "SAMPLE_SCANNERS", ("mct", "vereos"))
    monkeypatch.setattr(data_dock, "SAMPLE_SUBJECTS", 1)
    viewer = make_napari_viewer()
    data, _, _ = _docks(viewer)
    seen = []
    data.offer_sample()  # first: what the sample data is, and a question; nothing simulated
    offer = data.sample_offer
    assert offer.isVisibleTo(data) and "Biograph mCT" in offer.text.text()
    assert data.is_idle and not data_dock.sample_dataset_dir().exists()
    assert data.sample_button.isEnabled() and offer.start_button.isEnabled()
    offer.start_button.click()
    assert offer.bar.isVisibleTo(data) and offer.bar.maximum() == 2
    qtbot.waitUntil(lambda: (seen.append((data.status.text(), offer.bar.value()))
                             or data.is_idle), timeout=120_000)
    assert any("1 of 2 people" in text and "left" in text and value == 1
               for text, value in seen), seen[:5]
    assert data.status.text().startswith("Opened sample-dataset")
    assert not offer.isVisibleTo(data)
    assert list(data.session.dataset.scanners) == ["mct", "vereos"]
    assert data.target.currentText() == "vereos"


def test_one_readout_for_all_panels(make_napari_viewer, qtbot, gui_dataset, unetr_base):
    from napari_petite._widgets import views

    viewer, comp, low = _base_reconstruction(make_napari_viewer, qtbot, gui_dataset, unetr_base)
    full = viewer.layers["tgt/sub-02 full"]
    position = tuple(np.asarray([16, 10, 12]) * np.asarray(low.scale))
    text = views.readout([("low", low), ("base", comp.recon_layer), ("full", full)], position)
    expected = [f"low {float(low.data[16, 10, 12]):,.0f}",  # Bq/mL: whole numbers
                f"base {float(comp.recon_layer.data[16, 10, 12]):,.0f}",
                f"full {float(full.data[16, 10, 12]):,.0f}"]
    assert text == " · ".join(expected) + " Bq/mL"
    assert viewer.scale_bar.visible and str(low.units[0]) == "millimeter"


def test_recommended_recipe_fits_the_shipped_base(make_napari_viewer, qtbot):
    """The dock opens on the shipped UNETR with the paper's recipe fitted to 1 %; a change
    over the budget says so, and 'Use recommended' brings the fitted recipe back."""
    from napari_petite.peft.count import BUDGET_PERCENT

    viewer = make_napari_viewer()
    _, tune, _ = _docks(viewer)
    form, rank = tune.form, tune.form.options["lora"].widgets["rank"]
    qtbot.waitUntil(lambda: not tune.counting and rank.value == 2, timeout=60_000)
    assert tune.chooser.network()[0] == "unetr"
    assert form.recommended.text().startswith("✓") and not form.use_recommended.isEnabled()
    text = form.trainable.text()
    assert float(text.split("(")[1].split(" %")[0]) <= BUDGET_PERCENT and "over" not in text
    assert "rank 2" in form.recommended.toolTip()

    rank.value = 8
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
    assert f"over the {BUDGET_PERCENT:g} %" in form.trainable.text()
    assert form.recommended.text().startswith("★") and form.use_recommended.isEnabled()
    form.use_recommended.click()
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
    assert rank.value == 2 and form.recommended.text().startswith("✓")


def test_reconstruction_layers_carry_short_names():
    """A panel's label is its layer's name: a run's whole name would run into the next
    panel, so the layer takes the short one and the metadata keeps the whole."""
    from napari_petite._widgets.model_choice import recon_name

    assert recon_name("run 2: enc LoRA + dec SSF + BitFit on vision") == "reconstructed · run 2"
    assert recon_name("base model") == "reconstructed · base model"


def test_dock_tabs_show_names_as_written(make_napari_viewer, qtbot):
    """A tab reads a lone '&' as a shortcut mark; the docks' tabs escape it ('&&' is shown as
    '&'), while napari's title bar keeps the plain name."""
    from qtpy.QtWidgets import QTabBar

    from napari_petite._widgets.window import install_docks

    viewer = make_napari_viewer()
    docks = install_docks(viewer)
    qtbot.wait(50)
    tabs = [bar.tabText(i) for bar in viewer.window._qt_window.findChildren(QTabBar)
            for i in range(bar.count())]
    assert "Reconstruct && compare" in tabs and "Reconstruct & compare" not in tabs
    dock = docks["Reconstruct & compare"].parentWidget()
    while not hasattr(dock, "name"):
        dock = dock.parentWidget()
    assert dock.name == "Reconstruct & compare"


def test_a_fitted_recipe_never_replaces_a_saved_runs_spec(qtbot):
    """Opening a saved run shows its spec; the recipe fitted to the base a moment later is
    only offered (a run at the paper's rank 4 must not show rank 2)."""
    from napari_petite._widgets.method_form import MixPEFTForm
    from napari_petite.peft.spec import MixPEFTSpec, petite_spec

    form = MixPEFTForm()
    qtbot.addWidget(form)
    fitted = MixPEFTSpec("unetr", "small", "lora", "ssf", True, {"lora": {"rank": 2}})
    form.reset("unetr")
    form.show_spec(petite_spec("unetr", "small"))  # the saved run: rank 4
    form.follow_recipe(fitted)
    assert form.options["lora"].values()["rank"] == 4
    assert form.use_recommended.isEnabled()
    form.use_recommended.click()
    assert form.options["lora"].values()["rank"] == 2
    assert form.recommended.text().startswith("✓")
    form.reset("unetr")  # a new base: the paper's recipe, then its fitted one follows
    form.follow_recipe(fitted)
    assert form.options["lora"].values()["rank"] == 2
