"""The default GUI flow, measured as a user runs it: does a one-minute fine-tune show?

Opens ``petite gui``'s window (the three docks and the sample dataset, simulated on first use)
in a real napari viewer, keeps every default (the shipped UNETR base, the recommended PETITE
recipe, the dock's default steps and validation interval), chooses the second sample site as
the target, presses Start and waits for the run to end. Then it reconstructs the held-out test
subject with the base model and with the adapted one, shows them side by side, saves a
screenshot of the whole window and writes the numbers:

- ``val_step0_psnr``: validation PSNR of the base model (the curve's step 0);
- ``val_final_psnr``: the validation PSNR of the step the run keeps (its own rule: with the
  faithful recipe not always the highest PSNR), and ``val_gain_db`` their difference (the
  figure ``gui_demo_val_gain_db``); ``val_kept`` and ``val_step0`` also carry the fidelity
  figures (mean |regional bias|, lesion SUVmean bias) of those two validations;
- ``test_base_psnr`` / ``test_adapted_psnr``: the test subject, base vs adapted (head mask);
- ``fidelity_check``: the compare dock's fidelity check of the adapted model (and the base,
  and the input) on the validation subjects, as the screenshot shows it.

Usage (a display is needed)::

    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/bench_gui_demo.py \\
        --json benchmarks/results/gui_demo.json --screenshot docs/screenshot.png
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import wait_until


def wait(app, cond) -> None:
    wait_until(app, cond, timeout=1800.0)


def settle(app, seconds=0.5) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def arrange(viewer) -> None:
    """For the picture: the Fine-tune dock (curves) on the left instead of napari's layer
    panels, Reconstruct & compare in front on the right, so one screen shows the run and
    its result."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget, QScrollArea, QWidget

    window = viewer.window._qt_window
    # napari's name (the window title escapes '&' for the tab)
    docks = {getattr(d, "name", d.windowTitle()): d for d in window.findChildren(QDockWidget)}
    for name in ("layer controls", "layer list"):
        if name in docks:
            docks[name].hide()

    tune = docks["Fine-tune"]
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, tune)
    tune.show()
    window.resizeDocks([tune], [560], Qt.Orientation.Horizontal)
    docks["Reconstruct & compare"].raise_()
    for area in tune.findChildren(QScrollArea):  # the run panel and its curves in view
        area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())

    for toast in window.findChildren(QWidget):  # the run's "done" notification
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(1920, 1080), metavar=("W", "H"))
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--screenshot", default=None, metavar="PNG")
    args = parser.parse_args(argv)

    from napari.qt import get_qapp

    from napari_petite._widgets.window import open_viewer

    app = get_qapp()
    t_open = time.monotonic()
    viewer, docks = open_viewer()
    window = viewer.window._qt_window
    window.resize(*args.size)
    window.show()
    data, tune, comp = docks["Scanner data"], docks["Fine-tune"], docks["Reconstruct & compare"]
    data.open_sample()  # what "Simulate the sample data" does (or the cached one opens)
    wait(app, lambda: data.session.dataset is not None and data.is_idle)
    target = data.target.currentText()
    split = data.session.split
    test_id = split.test[0]
    data.load_subject(data.session.dataset.scanner(target).subject(test_id))
    wait(app, lambda: f"{target}/{test_id} low" in viewer.layers and data.is_idle)
    wait(app, lambda: not tune.counting)
    steps, val_every = tune.settings.steps.value(), tune.settings.val_every.value()
    spec, trainable = tune.spec(), tune.form.trainable.text()
    t0 = time.monotonic()
    tune.start()
    wait(app, lambda: not tune.is_idle)
    wait(app, lambda: tune.is_idle)
    seconds = time.monotonic() - t0
    curves = tune.run.curves
    trained = tune.session.trained
    start = curves.start_psnr
    kept = curves.kept()
    final = kept["psnr"] if kept else None
    results = {}
    for choice in ("base model", trained.name if trained else None):
        if choice is None:
            continue
        comp.model.setCurrentIndex(comp.model.findData(choice))
        comp.reconstruct()
        wait(app, lambda: not comp.is_idle)
        wait(app, lambda: comp.settled)
        results[choice] = comp.table.columns.get(choice, {}).get("psnr_mask")
    viewer.dims.set_current_step(0, viewer.layers[f"{target}/{test_id} low"].data.shape[0] // 2)
    comp.show_grid()
    wait(app, lambda: comp.settled)
    roi = comp.roi.measure()  # grey matter, the first region of the subject's label map
    comp.check_fidelity()  # the adapted model, the base and the input on the validation subjects
    wait(app, lambda: comp.is_idle)
    check = comp.fidelity.check
    arrange(viewer)
    settle(app, 1.0)
    from qtpy.QtWidgets import QScrollArea

    for area in comp.findChildren(QScrollArea):  # laid out now: the fidelity check's warnings
        area.ensureWidgetVisible(comp.fidelity.warnings)
    settle(app, 0.5)
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
        print(f"screenshot written to {args.screenshot}")
    record = {
        "target": target, "test_subject": test_id, "split": split.to_dict(), "spec": spec.label,
        "spec_full": spec.to_dict(), "trainable": trainable,
        "steps": steps, "val_every": val_every, "seconds": seconds,
        "window_s": time.monotonic() - t_open,
        "val_history": curves.val_records,
        "val_step0": next((r for r in curves.val_records if r["step"] == 0), None),
        "val_kept": kept, "recipe": tune.settings.recipe.currentData(),
        "val_step0_psnr": start, "val_final_psnr": final,
        "val_gain_db": None if None in (start, final) else final - start,
        "kept_model": trained.name if trained else None,
        "test_low_psnr": comp.table.columns.get("low-count", {}).get("psnr_mask"),
        "test_base_psnr": results.get("base model"),
        "test_adapted_psnr": results.get(trained.name) if trained else None,
        "roi": {name: {k: v for k, v in stats.items() if k != "voxels"}
                for name, stats in roi.items()},
        "fidelity_check": check.to_dict() if check is not None else None,
        "window": list(args.size), "status": tune.run.status.text(),
        "command": shlex.join(["xvfb-run", "-a", "-s",
                               f"-screen 0 {args.size[0]}x{args.size[1]}x24", "python",
                               "benchmarks/bench_gui_demo.py", *(argv or sys.argv[1:])]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "val_history"}, indent=2))
    if args.json:
        from napari_petite.io.atomic import write_text

        write_text(Path(args.json), json.dumps(record, indent=2) + "\n", overwrite=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
