"""The Fine-tune dock trains with the faithful recipe by default and shows whether a run keeps
the numbers a reader measures, in `petite gui`'s real window at 1920x1080 and 1366x768: the
recipe combo (faithful by default, locked while a run trains, the paper's on request, a saved
run's own options as "custom (as saved)"), the run folder's config, and the third curve
(validation fidelity) with the base's step-0 figures as dashed lines. Screenshots of the dock
go to .artifacts/ for a person to look at; the figures measured go to a JSON file beside
them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_gui_walk import _click, _shot, _tab
from test_widgets import ARTIFACTS, gui_dataset, unetr_base  # noqa: F401

pytestmark = pytest.mark.gui
REGION, LESION = "region_abs_bias_pct", "lesion_suvmean_bias_pct"


def _fits(widget, window) -> None:
    """``widget`` lies wholly inside the window (nothing cut off at its right or bottom)."""
    from qtpy.QtCore import QPoint

    corner = widget.mapTo(window, QPoint(widget.width(), widget.height()))
    assert widget.isVisible() and corner.x() <= window.width(), (corner, window.size())


@pytest.mark.parametrize("size", [(1920, 1080), (1366, 768)])
def test_recipe_and_fidelity_curve(make_napari_viewer, qtbot, gui_dataset,  # noqa: F811
                                   unetr_base, size):  # noqa: F811
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QScrollArea

    from napari_petite._widgets.training_form import CUSTOM_LABEL
    from napari_petite._widgets.window import open_viewer
    from napari_petite.training.engine import TrainConfig, recipe_of

    for meta in (gui_dataset / "tgt").glob("*/meta.json"):  # label 2 is a hot lesion
        doc = json.loads(meta.read_text())
        meta.write_text(json.dumps({**doc, "labels": {**doc["labels"], "2": "hot lesion"}}))
    tag = f"{size[0]}x{size[1]}"
    viewer, docks = open_viewer(data=gui_dataset, base=unetr_base, sample=False,
                                viewer=make_napari_viewer())
    window = viewer.window._qt_window
    window.resize(*size)
    window.show()
    qtbot.wait(300)
    hint = window.minimumSizeHint()
    assert hint.width() <= size[0] and hint.height() <= size[1]
    data, tune = docks["Scanner data"], docks["Fine-tune"]
    data.target.setCurrentText("tgt")
    _tab(qtbot, window, "Fine-tune")
    settings, curves = tune.settings, tune.run.curves

    # the faithful recipe by default, the same options as `petite finetune`'s default
    assert settings.recipe.currentText() == "faithful (recommended)"
    assert "hot spots" in settings.recipe.toolTip()
    assert settings.config().recipe_fields() == \
        TrainConfig().with_recipe("faithful").recipe_fields()

    settings.steps.setValue(4)
    settings.val_every.setValue(2)
    settings.batch.setValue(1)
    settings.device.setCurrentText("cpu")
    qtbot.waitUntil(lambda: not tune.counting, timeout=30_000)
    _click(qtbot, tune.run.start_button)
    qtbot.waitUntil(lambda: tune.session.running is not None, timeout=10_000)
    assert not settings.recipe.isEnabled()  # locked with the rest of the form
    assert "faithful training recipe" in tune.run.what.text()
    qtbot.waitUntil(lambda: tune.is_idle, timeout=120_000)
    assert settings.recipe.isEnabled()

    # the run's own config says faithful
    doc = json.loads((tune.run_folder / "run.json").read_text())
    config = TrainConfig(**{**doc["config"], "patch_size": None})
    assert recipe_of(config) == "faithful"
    assert (config.select, config.sampling, config.lesion_augment, config.lowfreq_weight) == \
        ("faithful", "hot", 0.5, 10.0)

    # the fidelity curve: one point per validation, the base's figures dashed
    history = json.loads((tune.run_folder / "adapter" / "adapter.json").read_text())[
        "metrics"]
    vals = history["val_history"]
    assert [v["step"] for v in vals] == [0, 2, 4] and all(REGION in v and LESION in v
                                                           for v in vals)
    for key in (REGION, LESION):
        steps, values = curves.quant_curves[key].getData()
        assert list(steps) == [0, 2, 4]
        assert values == pytest.approx([v[key] for v in vals])
        line = curves.quant_start[key]
        assert line.isVisible() and line.value() == pytest.approx(vals[0][key])
    lo, hi = curves.quant_plot.viewRange()[1]
    assert lo <= 0 <= hi and lo <= min(v[LESION] for v in vals)  # zero and every point shown
    kept = curves.kept()
    assert kept["step"] == history["val_best"]["step"]  # the engine's choice, read alike
    status = tune.run.status.text()
    assert ("regions |bias|" in status) == (kept["step"] != 0), status
    (ARTIFACTS / f"quant-{tag}.json").write_text(json.dumps(
        {"status": status, "kept_step": kept["step"],
         "figures": [{k: v.get(k) for k in ("step", "psnr", REGION, LESION)} for v in vals]},
        indent=2))
    for widget in (settings.recipe, curves.plots):
        _fits(widget, window)
    assert curves.quant_plot.sceneBoundingRect().height() >= 60  # readable, not squeezed
    area = tune.findChild(QScrollArea)
    top = tune.run.status.mapTo(area.widget(), QPoint(0, 0)).y()  # as a user scrolls down
    area.verticalScrollBar().setValue(top)
    qtbot.wait(100)
    _shot(window, f"quant-{tag}-window")
    area.widget().grab().save(str(ARTIFACTS / f"quant-{tag}-dock.png"))  # all its content

    # the paper's recipe on request
    settings.recipe.setCurrentIndex(settings.recipe.findData("paper"))
    assert recipe_of(settings.config()) == "paper" and settings.config().select == "psnr"

    # a saved run's own options, neither recipe: shown as they are, gone once one is chosen
    custom = TrainConfig(steps=4).with_recipe("faithful", loss="poisson", lowfreq_weight=5.0)
    settings.show_config(custom)
    assert settings.recipe.currentText() == CUSTOM_LABEL
    assert settings.config().recipe_fields() == custom.recipe_fields()
    settings.show_config(TrainConfig().with_recipe("faithful"))
    assert settings.recipe.findText(CUSTOM_LABEL) < 0
    assert settings.recipe.currentData() == "faithful"
    settings.show_config(custom)
    settings.recipe.setCurrentIndex(settings.recipe.findData("paper"))
    assert settings.recipe.findText(CUSTOM_LABEL) < 0 and settings.recipe.count() == 2

    # a figure the validation subject cannot measure (no lesions) is not drawn
    no_lesions = [{k: v for k, v in r.items() if k != LESION} for r in vals]
    tune.run.show_history([1.0] * 4, no_lesions, select=("faithful", 1.0))
    assert len(curves.quant_curves[LESION].getData()[0] or ()) == 0
    assert not curves.quant_start[LESION].isVisible() and curves.quant_start[REGION].isVisible()
    assert "lesions" not in curves.quant_text() and np.isfinite(kept["psnr"])
