"""The three napari docks in a real viewer (Xvfb): load -> choose -> train -> stop ->
reconstruct -> compare -> export, plus the error paths and closing napari mid-training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_subject, write_nifti

pytestmark = pytest.mark.gui
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
    qtbot.waitUntil(lambda: f"tgt/{subject} low" in viewer.layers, timeout=20_000)
    return viewer.layers[f"tgt/{subject} low"]


def _setup_training(tune, base, steps=2000):
    tune.set_base(base)
    tune.steps.setValue(steps)
    tune.val_every.setValue(3)
    tune.batch.setValue(1)
    tune.device.setCurrentText("cpu")


def test_full_flow(make_napari_viewer, qtbot, gui_dataset, unetr_base, tmp_path, monkeypatch):
    import napari_petite.training.engine as engine
    from napari_petite._widgets.compare_dock import DIFF_NAME, RECON_NAME
    from napari_petite._widgets.finetune_dock import trainable_line
    from napari_petite.io.dataset import discover
    from napari_petite.io.nifti import read_volume
    from napari_petite.models.checkpoint import load_checkpoint
    from napari_petite.peft.apply import apply_spec

    viewer = make_napari_viewer()
    data, tune, comp = _docks(viewer)

    # load: scale = spacing, contrast linked
    low = _load(qtbot, viewer, data, gui_dataset)
    subject = discover(gui_dataset).scanner("tgt").subject("sub-02")
    full = viewer.layers["tgt/sub-02 full"]
    for layer in (low, full, viewer.layers["tgt/sub-02 truth"]):
        assert np.allclose(layer.scale, subject.spacing)
    assert data.session.split.test == ["sub-02"] and data.session.split.train == ["sub-00"]
    full.contrast_limits = (1.0, 777.0)
    assert tuple(low.contrast_limits) == pytest.approx((1.0, 777.0))

    # choose methods: the line equals apply_spec's report on the real base network
    _setup_training(tune, unetr_base)
    for enc, dec, bitfit in (("lora", "ssf", True), ("adapter", "ia3", False),
                             ("full", "none", False)):
        _pick(tune.encoder, enc)
        _pick(tune.decoder, dec)
        tune.bitfit.setChecked(bitfit)
        qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
        model, _ = load_checkpoint(unetr_base)
        report = apply_spec(model, tune.spec())
        assert tune.trainable.text() == trainable_line(report.n_trainable, report.n_total,
                                                       report.percent)
    _pick(tune.decoder, "vpt")  # does not fit a CNN decoder: the dock switches away
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
    assert tune.decoder.currentData() != "vpt"
    vpt_row = tune.decoder.findData("vpt")
    assert not tune.decoder.model().item(vpt_row).isEnabled()  # CNN decoder: no VPT
    assert "no prompt host" in tune.decoder.model().item(vpt_row).toolTip()
    _pick(tune.encoder, "lora")
    _pick(tune.decoder, "ssf")
    tune.bitfit.setChecked(True)
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)

    # start -> loss points -> stop within one step -> idle
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

    monkeypatch.setattr(engine, "Control", SpyControl)
    tune.start()
    assert not tune.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(tune.curves.loss_values) >= 4, timeout=60_000)
    qtbot.waitUntil(lambda: tune.curves.redraws > 0 and len(tune.curves.val_psnr) >= 1,
                    timeout=60_000)
    tune.stop()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=30_000)
    trained = tune.session.trained
    assert trained is not None and trained.training["stopped"]
    assert trained.training["steps_done"] <= reads["at_stop"]  # the step under way, no more
    assert tune.start_button.isEnabled() and not tune.stop_button.isEnabled()
    assert tune.curves.loss_curve.getData()[0] is not None

    # the stopped run left a resumable checkpoint at its last step; Resume continues it
    done = trained.training["steps_done"]
    saved = json.loads((tune.run_folder / "resume.json").read_text())
    assert saved["step"] == done and str(tune.run_folder) in tune.status.text()
    tune.steps.setValue(done + 2)
    tune.start(resume=tune.run_folder)
    qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    resumed = tune.session.trained
    assert resumed is not trained and not resumed.training["stopped"]
    assert resumed.training["steps_done"] == done + 2
    assert resumed.training["losses"][:done] == trained.training["losses"]

    # save and load the adapter bundle
    bundle = tune.save_adapter(tmp_path / "adapter")
    assert (bundle / "adapter.safetensors").is_file()
    tune.load_adapter(bundle)
    qtbot.waitUntil(lambda: tune.is_idle, timeout=30_000)
    assert tune.session.trained.bundle == bundle

    # reconstruct with the adapted model: same scale and geometry, no source path
    assert comp.low.currentText() == low.name and comp.full.currentText() == full.name
    assert comp.model.currentData() == "adapted"
    comp.reconstruct()
    qtbot.waitUntil(lambda: RECON_NAME in viewer.layers and comp.is_idle, timeout=60_000)
    recon = viewer.layers[RECON_NAME]
    assert np.allclose(recon.scale, low.scale)
    assert np.allclose(recon.metadata["affine"], low.metadata["affine"])
    assert recon.metadata["source_path"] is None and recon.data.shape == low.data.shape
    assert viewer.canvas.grid.enabled
    labels = [comp.table.verticalHeaderItem(i).text() for i in range(comp.table.rowCount())]
    assert "PSNR head (dB)" in labels and "bias lesion (%)" in labels
    recon.contrast_limits = (2.0, 555.0)
    assert tuple(full.contrast_limits) == pytest.approx((2.0, 555.0))
    comp.show_difference()
    lo, hi = viewer.layers[DIFF_NAME].contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0
    comp.show_overlay()
    assert recon.blending == "additive" and not viewer.canvas.grid.enabled

    # export round trip; never over an input
    out = comp.export_nifti(tmp_path / "out" / "recon.nii.gz")
    back, src = read_volume(out), read_volume(subject.low)
    assert np.allclose(back.affine, src.affine) and np.allclose(back.data, recon.data)
    n_errors = len(_errors())
    assert comp.export_nifti(subject.low, overwrite=True) is None
    assert len(_errors()) == n_errors + 1
    assert read_volume(subject.low).data.shape == src.data.shape  # input untouched
    png = comp.export_report(tmp_path / "out" / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # batch export of the target's test subjects
    comp.batch_export(tmp_path / "batch")
    qtbot.waitUntil(lambda: (tmp_path / "batch" / "tgt" / "metrics.json").is_file()
                    and comp.is_idle, timeout=60_000)
    doc = json.loads((tmp_path / "batch" / "tgt" / "metrics.json").read_text())
    assert [r["subject"] for r in doc["subjects"]] == ["sub-02"]
    written = read_volume(tmp_path / "batch" / "tgt" / "sub-02_reconstructed.nii.gz")
    assert np.allclose(written.affine, src.affine)


@pytest.mark.parametrize("damage", ["wrong backbone", "corrupted"])
def test_bad_base_notifies_and_dock_stays_usable(make_napari_viewer, qtbot, gui_dataset,
                                                  unetr_base, tmp_path, damage):
    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    if damage == "wrong backbone":
        bad = _base(tmp_path, "cvtgan")
        expected = "cvtgan"
    else:
        bad = tmp_path / "broken" / unetr_base.name
        bad.parent.mkdir()
        blob = bytearray(unetr_base.read_bytes())
        blob[-100:] = b"\0" * 100
        bad.write_bytes(bytes(blob))
        for sib in unetr_base.parent.glob(unetr_base.stem + "*.json"):
            (bad.parent / sib.name).write_bytes(sib.read_bytes())
        expected = "sha256"
    _setup_training(tune, bad, steps=3)
    n_errors = len(_errors())
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle and len(_errors()) > n_errors, timeout=30_000)
    assert expected in _errors()[-1]
    assert "Traceback" not in _errors()[-1]
    assert tune.start_button.isEnabled() and tune.session.trained is None
    # usable again: a good base trains
    tune.set_base(unetr_base)
    tune.start()
    qtbot.waitUntil(lambda: tune.is_idle and tune.session.trained is not None, timeout=60_000)
    assert tune.session.trained.training["steps_done"] == 3


def test_closing_viewer_during_training_is_clean(make_napari_viewer, qtbot, gui_dataset,
                                                 unetr_base):
    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    _setup_training(tune, unetr_base, steps=100_000)
    tune.start()
    job = tune.job
    qtbot.waitUntil(lambda: len(tune.curves.loss_values) >= 2, timeout=60_000)
    tune.toggle_pause()
    qtbot.waitUntil(lambda: tune.status.text().startswith("Paused"), timeout=30_000)
    n_paused = len(tune.curves.loss_values)
    from napari_petite._widgets.finetune_dock import DISPLAY_MS

    qtbot.wait(DISPLAY_MS + 300)  # one display refresh: it must not hide "Paused"
    assert len(tune.curves.loss_values) == n_paused  # no steps while paused
    assert tune.status.text().startswith("Paused")
    tune.toggle_pause()
    qtbot.waitUntil(lambda: len(tune.curves.loss_values) > n_paused, timeout=30_000)
    viewer.close()
    assert job.shutdown(timeout=30)  # the thread has left the training loop
    assert job.stop_requested.is_set()
    qtbot.wait(200)  # late signals (if any) must not reach deleted widgets


def test_closing_the_dock_stops_training(make_napari_viewer, qtbot, gui_dataset, unetr_base):
    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)
    _setup_training(tune, unetr_base, steps=100_000)
    tune.start()
    job = tune.job
    qtbot.waitUntil(lambda: len(tune.curves.loss_values) >= 1, timeout=60_000)
    viewer.window.remove_dock_widget(tune)  # what the dock's close button does
    assert job.stop_requested.is_set()
    assert job.shutdown(timeout=30)
    qtbot.wait(200)
