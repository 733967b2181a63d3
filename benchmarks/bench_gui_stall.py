"""GUI event-loop stalls in every step of a clinician's walk through the docks.

A QTimer heartbeat fires every 10 ms in a real napari viewer (Xvfb renders with llvmpipe on
the CPU, so every redraw costs CPU time too); a beat's stall is how late it came (gap − 10
ms). The walk presses what a user presses, phase by phase, and records p50 / p99 / max stall
per phase:

open the dataset, load the test subject, recount a recipe, start training; *while training
runs*: let it train, scroll slices, reconstruct with the base model (the result shown as
soon as it exists), switch side by side / overlay / difference, change the view and the
MIP, values in SUV, window presets, click a crosshair, measure a region, write the report,
open a DICOM series; then stop the run, reconstruct with the adapted model and compare
again with nothing training.

``--load N`` runs N busy processes beside it (a machine shared with other work); the
largest stall of the whole walk is ``gui_walk_max_stall_ms`` in ``summary.py``. The window's
first appearance is measured before the walk, as start-up (``startup`` in the JSON).

Usage (a display is needed)::

    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/bench_gui_stall.py \\
        [--data DIR] [--source mct] [--target vision] \\
        [--base sample_data/models/unetr-small.safetensors] [--train-seconds 20] \\
        [--load 0] [--json benchmarks/results/gui_walk.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, ROOT, command_line, ensure_data, machine, write_json

HEARTBEAT_MS = 10


def stall_stats(beats: list[float]) -> dict:
    """p50 / p99 / max stall (ms) of heartbeat times, and the beat count."""
    gaps = np.clip(np.diff(np.asarray(beats)) * 1000.0 - HEARTBEAT_MS, 0.0, None)
    if gaps.size == 0:
        return {"beats": len(beats), "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"beats": len(beats), "p50_ms": float(np.median(gaps)),
            "p99_ms": float(np.percentile(gaps, 99)), "max_ms": float(gaps.max())}


class Walk:
    """Runs phases under a heartbeat and keeps their stall figures."""

    def __init__(self, app, profile: str | None = None) -> None:
        from qtpy.QtCore import QTimer

        self.app = app
        self.profile = profile  # phases whose name contains it are profiled (GUI thread)
        self.beats: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(lambda: self.beats.append(time.perf_counter()))
        self.phases: dict[str, dict] = {}
        self.collections: list[tuple[float, float, int]] = []  # (end, ms, generation)
        self._gc_started = 0.0
        gc.callbacks.append(self._gc_event)

    def _gc_event(self, phase: str, info: dict) -> None:
        """Python's cyclic collector holds the GIL: its passes are stalls of their own."""
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        else:
            self.collections.append((now, 1000.0 * (now - self._gc_started),
                                     info["generation"]))

    def pump(self, seconds: float = 0.0, until=None, timeout: float = 900.0) -> None:
        """Run the event loop for ``seconds`` and then until ``until()`` holds."""
        t0 = time.monotonic()
        while True:
            self.app.processEvents()
            done = time.monotonic() - t0 >= seconds and (until is None or until())
            if done:
                return
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("the phase did not finish")
            time.sleep(0.001)

    def phase(self, name: str, action, until=None, settle: float = 1.0,
              timeout: float = 900.0) -> None:
        """``action()``, then the event loop until ``until()`` and ``settle`` seconds more
        (the paints that follow), all under the heartbeat."""
        import cProfile

        profiler = cProfile.Profile() if self.profile and self.profile in name else None
        self.beats.clear()
        self.collections.clear()
        self.timer.start()
        self.beats.append(time.perf_counter())  # the action's own time counts
        t0 = time.monotonic()
        try:
            if profiler is not None:
                profiler.enable()
            action()
            self.pump(0.0, until, timeout)
            self.pump(settle)
        finally:
            self.beats.append(time.perf_counter())  # a stall at the very end counts too
            self.timer.stop()
            if profiler is not None:
                import pstats

                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        stats = stall_stats(self.beats)
        stats["seconds"] = round(time.monotonic() - t0, 2)
        full = [ms for _, ms, generation in self.collections if generation == 2]
        stats["full_collections"] = len(full)
        stats["full_collection_max_ms"] = max(full, default=0.0)
        self.phases[name] = stats
        print(f"  {name:<34} {stats['seconds']:7.1f} s  p50 {stats['p50_ms'] or 0:6.1f}  "
              f"p99 {stats['p99_ms'] or 0:6.1f}  max {stats['max_ms'] or 0:7.1f} ms  "
              f"full GC {len(full)} (max {max(full, default=0.0):.0f} ms)", flush=True)


@contextlib.contextmanager
def competing_load(n: int):
    """``n`` busy processes (ordinary priority) for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def dicom_copy(volume, folder: Path) -> Path:
    """The scan as a DICOM PET series (the tests' writer, independent of the reader)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from dicom_fixtures import write_pet_series

    return write_pet_series(folder, np.asarray(volume.data), spacing=volume.spacing)


def walk(args, app, viewer, docks, data: Path) -> Walk:
    from napari_petite.io.dataset import discover
    from napari_petite.io.volumes import read_any

    data_dock, tune, comp = (docks[k] for k in ("Scanner data", "Fine-tune",
                                                  "Reconstruct & compare"))
    w = Walk(app, args.profile)
    target = args.target
    w.phase("open the dataset", lambda: data_dock.open_dataset_later(data),
            until=lambda: data_dock.session.dataset is not None and data_dock.is_idle)
    data_dock.source.setCurrentText(args.source)
    data_dock.target.setCurrentText(target)
    test_id = data_dock.session.split.test[0]
    subject = discover(data).scanner(target).subject(test_id)
    low_name = f"{target}/{test_id} low"
    w.phase("load the test subject", lambda: data_dock.load_subject(subject),
            until=lambda: low_name in viewer.layers and data_dock.is_idle and comp.settled)
    tune.set_base(args.base)
    w.pump(until=lambda: not tune.counting)
    form = tune.form

    def recount():
        form.encoder.setCurrentIndex(form.encoder.findData("adapter"))

    w.phase("recount a recipe", recount, until=lambda: not tune.counting)
    form.use_recommended.click()
    w.pump(until=lambda: not tune.counting)
    tune.settings.steps.setValue(100_000)
    tune.settings.val_every.setValue(args.val_every)
    tune.settings.device.setCurrentText("cpu")
    curves = tune.run.curves
    w.phase("start training", tune.start, until=lambda: len(curves.loss_values) >= 1)
    w.phase("training", lambda: None, settle=args.train_seconds)
    n_slices = viewer.layers[low_name].data.shape[0]

    def scroll():
        from qtpy.QtCore import QTimer

        timer = QTimer(comp)
        timer.setInterval(250)
        timer.timeout.connect(lambda: viewer.dims.set_current_step(
            0, (viewer.dims.current_step[0] + 1) % n_slices))
        timer.start()
        w.scroll_timer = timer

    w.phase("training + scrolling slices", scroll, settle=args.train_seconds)
    w.scroll_timer.stop()
    comparisons(w, viewer, comp, data_dock, subject, "while training")
    dcm = Path(tempfile.mkdtemp()) / "dicom"
    dicom_copy(read_any(subject.low), dcm)
    w.phase("open a DICOM series (while training)", lambda: data_dock.open_scan(dcm),
            until=lambda: data_dock.is_idle and any("dicom" in lay.name
                                                     for lay in viewer.layers))
    w.phase("stop training", tune.stop, until=lambda: tune.is_idle)
    w.steps = len(curves.loss_values)
    data_dock.load_subject(subject)
    w.pump(until=lambda: data_dock.is_idle)
    w.pump(1.0)
    comp.model.setCurrentIndex(comp.model.count() - 1)
    comparisons(w, viewer, comp, data_dock, subject, "idle", reconstruct_as="adapted")
    w.reconstruction = timed_reconstruction(w, comp, subject, args.base)
    return w


def timed_reconstruction(w: Walk, comp, subject, base) -> dict:
    """Seconds from pressing Reconstruct (base model, nothing training) to the result on
    screen, and with its metrics; against ``petite predict`` on the same scan (a fresh
    process: what a user of the command line waits, imports included)."""
    from napari_petite._widgets.model_choice import BASE

    comp.model.setCurrentIndex(comp.model.findData(BASE))
    before = comp.recon_layer.data if comp.recon_layer is not None else None
    shown = {}

    def start():
        shown["t0"] = time.monotonic()
        comp.reconstruct()

    def result_shown():
        layer = comp.recon_layer
        if "result" not in shown and layer is not None and layer.data is not before:
            shown["result"] = time.monotonic() - shown["t0"]
        return "result" in shown and comp.settled

    w.phase("reconstruct, timed (idle)", start, until=result_shown, settle=0.0)
    dock = w.phases["reconstruct, timed (idle)"]["seconds"]
    out = Path(tempfile.mkdtemp())
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "napari_petite.cli", "predict", str(subject.low),
                    "--base", str(base), "--out", str(out), "--json"], check=True,
                   stdout=subprocess.DEVNULL)
    cli = time.monotonic() - t0
    print(f"  reconstruction: dock {shown['result']:.1f} s to the result, {dock:.1f} s with "
          f"metrics; petite predict {cli:.1f} s", flush=True)
    return {"dock_result_s": shown["result"], "dock_with_metrics_s": dock,
            "petite_predict_s": cli}


def comparisons(w: Walk, viewer, comp, data_dock, subject, when: str,
                reconstruct_as: str = "base") -> None:
    """Reconstruct and look at the result every way the compare dock offers."""
    from napari_petite._widgets.model_choice import BASE

    if reconstruct_as == "base":
        comp.model.setCurrentIndex(comp.model.findData(BASE))
    drawn = comp_settled(comp)
    w.phase(f"reconstruct with the {reconstruct_as} model ({when})", comp.reconstruct,
            until=lambda: comp.recon_layer is not None and drawn())
    views = comp.views
    w.phase(f"difference ({when})", comp.show_difference,
            until=lambda: comp.comparison.mode == "difference" and drawn())
    w.phase(f"overlay ({when})", comp.show_overlay, until=drawn)
    w.phase(f"side by side ({when})", comp.show_grid, until=drawn)

    def orientations():
        for view in ("coronal", "sagittal", "axial"):
            views.orientation.setCurrentText(view)
            w.pump(0.5, until=drawn)

    w.phase(f"orientations ({when})", orientations, until=drawn)

    def toggle(box):
        box.setChecked(True)
        w.pump(0.5, until=drawn)
        box.setChecked(False)

    w.phase(f"MIP on and off ({when})", lambda: toggle(views.mip), until=drawn)
    w.phase(f"values in SUV and back ({when})", lambda: toggle(views.suv), until=drawn)

    def windows():
        for text in [views.window.itemText(i) for i in range(views.window.count())]:
            views.window.setCurrentText(text)
            w.pump(0.3)
        views.window.setCurrentIndex(0)

    w.phase(f"window presets ({when})", windows, until=drawn)
    low = comp.choice.layer(comp.low)
    w.phase(f"crosshair ({when})", lambda: comp.crosshair.set(
        tuple(np.asarray(low.data.shape) / 2 * np.asarray(low.scale))), until=drawn)
    labels = f"{subject.scanner}/{subject.id} labels"
    if labels in viewer.layers:
        comp.roi.source.setCurrentText(labels)
        w.phase(f"region statistics ({when})", comp.roi.measure)
    out = Path(tempfile.mkdtemp())
    w.phase(f"report ({when})", lambda: comp.export_report(out / "report.pdf",
                                                          overwrite=True), until=drawn)
    w.phase(f"export NIfTI ({when})", lambda: comp.export_nifti(out / "recon.nii.gz",
                                                                 overwrite=True), until=drawn)


def first_paint(app, window) -> dict:
    """The window's first appearance (Qt lays out and paints every dock, the canvas makes
    its OpenGL context and compiles its first shaders): start-up, before the walk's first
    step, measured apart so that it does not land in that step."""
    w = Walk(app)
    w.phase("show the window (start-up)", lambda: None, until=window.isVisible, settle=2.0)
    gc.callbacks.remove(w._gc_event)
    return w.phases["show the window (start-up)"]


def comp_settled(comp):
    """The compare dock has nothing computing and nothing left to draw."""
    return lambda: comp.settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--source", default="mct")
    parser.add_argument("--target", default="vision")
    parser.add_argument("--base", default=str(ROOT / "sample_data" / "models" /
                                              "unetr-small.safetensors"))
    parser.add_argument("--train-seconds", type=float, default=20.0)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--load", type=int, default=0, help="busy processes running beside")
    parser.add_argument("--size", type=int, nargs=2, default=(1920, 1080), metavar=("W", "H"))
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--profile", default=None, metavar="TEXT",
                        help="print a cProfile of the GUI thread in phases whose name has TEXT")
    parser.add_argument("--log-steps", action="store_true",
                        help="print how long each GUI drawing step took")
    args = parser.parse_args()
    if args.log_steps:
        import logging

        logging.basicConfig(format="    %(message)s")
        logging.getLogger("napari_petite._widgets.steps").setLevel(logging.DEBUG)

    from napari.qt import get_qapp

    from napari_petite._widgets.window import open_viewer

    data = Path(args.data).expanduser()
    ensure_data(data, [args.source, args.target])
    app = get_qapp()
    viewer, docks = open_viewer(sample=False)
    window = viewer.window._qt_window
    window.resize(*args.size)
    window.show()
    with competing_load(args.load):
        startup = first_paint(app, window)
        w = walk(args, app, viewer, docks, data)
    worst = max(w.phases.items(), key=lambda kv: kv[1]["max_ms"] or 0.0)
    print(f"largest stall: {worst[1]['max_ms']:.0f} ms in '{worst[0]}'")
    if args.json:
        write_json(args.json, {
            "phases": w.phases, "max_ms": worst[1]["max_ms"], "worst_phase": worst[0],
            "startup": startup,
            "training_steps": w.steps, "reconstruction": w.reconstruction,
            "heartbeat_ms": HEARTBEAT_MS, "load": args.load,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": machine(), "command": command_line()})
        print(f"written to {args.json}")
    viewer.close()


if __name__ == "__main__":
    main()
