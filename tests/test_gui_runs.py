"""A run you can see and cannot change under it, in the real docks: the inputs a running
run uses are locked and the dock says what trains; source = target is refused; saved runs
are listed only when they can be opened, a finished one opens as it ended (not retrained), a
stopped one continues; "no step beat the model it started from" only after a validation."""

from __future__ import annotations

import json

import pytest
from test_widgets import (  # noqa: F401 (fixtures)
    _docks,
    _errors,
    _load,
    _setup_training,
    gui_dataset,
    trained_viewer,
    unetr_base,
)

pytestmark = pytest.mark.gui


def _inputs(data, tune):
    return [data.split_form, data.folder, data.browse_button, data.sample_button,
            data.pairs_button, tune.chooser, tune.form, tune.settings, tune.load_button]


def test_a_running_run_is_visible_and_its_inputs_locked(
        make_napari_viewer, qtbot, gui_dataset, unetr_base):  # noqa: F811
    from napari_petite._widgets.finetune_dock import runs_dir, saved_runs

    viewer = make_napari_viewer()
    data, tune, _ = _docks(viewer)
    _load(qtbot, viewer, data, gui_dataset)

    # the source scanner cannot be the target
    _setup_training(tune, unetr_base, steps=3, val_every=0)
    data.source.setCurrentText("tgt")
    assert "both tgt" in data.split_form.label.text()
    n = len(_errors())
    tune.start()
    assert tune.is_idle and len(_errors()) == n + 1 and "both tgt" in _errors()[-1]
    data.target.setCurrentText("src")  # the base's card says it was pre-trained on src
    tune.start()
    assert tune.is_idle and len(_errors()) == n + 2 and "both src" in _errors()[-1]
    data.target.setCurrentText("tgt")
    data.source.setCurrentText("src")

    # while it trains: what runs is said, and what it uses is locked
    _setup_training(tune, unetr_base, steps=100_000, val_every=1000)
    tune.start()
    qtbot.waitUntil(lambda: len(tune.run.curves.loss_values) >= 2, timeout=60_000)
    what = tune.run.what.text()
    assert what.startswith("Running: base unetr small (pre-trained on src) adapted to tgt")
    assert "low-rank updates in the encoder" in what and "100000 steps" in what
    assert not any(w.isEnabled() for w in _inputs(data, tune))
    assert tune.session.running is not None
    assert "time left" in tune.run.status.text() or "step" in tune.run.status.text()
    tune.stop()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    assert all(w.isEnabled() for w in _inputs(data, tune) if w is not tune.save_button)
    # stopped before a validation after the start: said as such, nothing added
    status = tune.run.status.text()
    assert "no step was validated after the start" in status and "no validated step" not in \
        status and not tune.session.models
    stopped = tune.run_folder
    assert stopped in [f for f, _ in saved_runs()]  # resumable: listed with its step
    assert "stopped at step" in dict(saved_runs())[stopped]

    # a run stopped before its first step left nothing to open: its folder is gone
    tune.start()
    tune.stop()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    empty = tune.run_folder
    assert not empty.exists() and empty not in [f for f, _ in saved_runs()]
    (runs_dir() / "only-a-description").mkdir(parents=True, exist_ok=True)
    (runs_dir() / "only-a-description" / "run.json").write_text("{}")
    assert all(f.name != "only-a-description" for f, _ in saved_runs())


def test_a_finished_run_opens_as_it_ended(make_napari_viewer, qtbot,
                                          gui_dataset, unetr_base):  # noqa: F811
    from napari_petite._widgets.finetune_dock import FINISHED, saved_runs

    _, _, tune, comp = trained_viewer(make_napari_viewer, qtbot, gui_dataset, unetr_base,
                                      steps=4, val_every=2)
    folder = tune.run_folder
    assert (folder / FINISHED / "adapter.safetensors").is_file()
    assert "finished, 4 steps" in dict(saved_runs())[folder]
    steps = tune.session.models[-1].training["steps_done"] if tune.session.models else 4
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    n_models = len(tune.session.models)

    tune.settings.steps.setValue(50)  # the form differs; the run's own settings come back
    tune.open_run(folder)
    qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    assert "not retrained" in tune.run.status.text() and "Finished run" in \
        tune.run.status.text()
    assert tune.settings.steps.value() == 4
    assert len(tune.session.models) == n_models + 1
    opened = tune.session.models[-1]
    assert opened.training["steps_done"] == steps == 4
    assert len(tune.run.curves.loss_values) == 4  # its own curve, drawn again
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    assert comp.model.currentData() == opened.name  # ready to reconstruct with
    doc = json.loads((folder / "run.json").read_text())
    assert doc["config"]["steps"] == 4
