"""The bad-input catalog, driven through the napari reader / docks and through the CLI.

Every case builds its files in a folder of its own, hashes them, runs, and checks:

- CLI (a real ``python -m napari_petite.cli`` process): exit code 2, the expected sentence on
  one ``petite: error:`` line, no traceback; cases marked ``ok`` must work instead (exit 0);
- GUI (a real viewer): the expected sentence arrives as an error notification, the dock is
  idle and usable again;
- both: the inputs are byte-identical afterwards and nothing appears under a final name.

The builders of the reader's own unit cases (``test_nifti.BAD_CASES``) are reused, not copied.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import ANISO_AFFINE, make_subject, pet_like, write_nifti
from test_nifti import BAD_CASES

SHAPE_XYZ = (40, 36, 34)  # z, y, x = 34, 36, 40: a few 32^3 windows of the tiny bases
GB_CLASS_XYZ = (1024, 1024, 512)  # 2 GiB of float32 declared by the header
UNWRITABLE = Path("/sys/petite-catalog-out")  # sysfs: no new files, not even for root


# -- shared models -------------------------------------------------------------------------
@dataclass
class Models:
    base: Path
    other: Path
    adapter: Path  # for `base`
    adapter_unetr: Path  # for a UNETR base


def _tiny(backbone: str, path: Path, seed: int) -> Path:
    import torch

    from napari_petite.models.checkpoint import save_checkpoint
    from napari_petite.models.registry import build_model, smoke_overrides

    torch.manual_seed(seed)
    return save_checkpoint(build_model(backbone, "small", **smoke_overrides(backbone)), path)


def _bundle(base: Path, folder: Path) -> Path:
    from napari_petite.models.checkpoint import file_sha256, load_checkpoint
    from napari_petite.peft.apply import apply_spec
    from napari_petite.peft.bundle import save_adapter
    from napari_petite.peft.spec import PETITE, MixPEFTSpec

    model, _ = load_checkpoint(base)
    enc, dec = PETITE[model.name]
    spec = MixPEFTSpec(model.name, model.preset, enc, dec, True)
    apply_spec(model, spec)
    return save_adapter(model, spec, folder, base_sha256=file_sha256(base))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    # tiny CVT-GAN bases: a CLI process loads one in 2 s less than a UNETR (no MONAI ViT)
    root = tmp_path_factory.mktemp("catalog-models")
    base = _tiny("cvtgan", root / "base.safetensors", 0)
    unetr = _tiny("unetr", root / "unetr.safetensors", 0)
    return Models(base=base, other=_tiny("cvtgan", root / "other.safetensors", 1),
                  adapter=_bundle(base, root / "adapter"),
                  adapter_unetr=_bundle(unetr, root / "adapter-unetr"))


# -- the catalog ---------------------------------------------------------------------------
@dataclass
class Case:
    """What one bad input looks like to each front end."""

    cli: list[str]
    message: str  # expected in the CLI's error line (and the GUI's unless gui_message)
    gui: tuple  # (route, *arguments) run by GUI_ROUTES
    inputs: list[Path]  # must stay byte-identical
    finals: list[Path] = field(default_factory=list)  # final names that must not appear
    gui_message: str | None = None
    ok: bool = False  # must work (exit 0, output written)
    env: dict = field(default_factory=dict)
    disk_limit: int | None = None  # RLIMIT_FSIZE for the CLI process: a full disk


def _volume(folder: Path, name="scan.nii.gz", data=None) -> Path:
    return write_nifti(folder / name, pet_like(SHAPE_XYZ) if data is None else data)


def _predict(low: Path, out: Path, models: Models, *extra) -> list[str]:
    return ["predict", str(low), "--base", str(models.base), "--device", "cpu", "--out",
            str(out), *extra]


def _recon_name(low: Path, out: Path) -> Path:
    from napari_petite.commands.predict import output_name

    return out / output_name(low)


def reader_case(key: str, cli_verb: str):
    """A case of test_nifti's BAD_CASES: reader notification in napari, the CLI on the file."""

    def build(folder: Path, models: Models) -> Case:
        make, message = BAD_CASES[key]
        path = make(folder)
        out = folder / "out"
        cli = ["info", str(path)] if cli_verb == "info" else _predict(path, out, models)
        return Case(cli, message, ("reader", path), [path], [out])

    return build


def non_nifti(folder, models):
    png = folder / "scan.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    renamed = folder / "photo.nii"  # the same bytes under a NIfTI name reach our reader
    renamed.write_bytes(png.read_bytes())
    return Case(["info", str(png)], "is a PNG picture, not a PET volume",
                ("reader", renamed), [png, renamed], gui_message="could not be read as NIfTI")


def osem_negatives(folder, models):
    # OSEM/FBP images undershoot to small negative values in the background: normal, accepted
    data = pet_like(SHAPE_XYZ) - 60.0
    assert data.min() < 0
    low, out = _volume(folder, data=data), folder / "out"
    return Case(_predict(low, out, models), "", ("reconstruct", low), [low], ok=True,
                finals=[_recon_name(low, out)])


def all_negative(folder, models):
    low, out = _volume(folder, data=-pet_like(SHAPE_XYZ)), folder / "out"
    return Case(_predict(low, out, models), "zero or negative everywhere",
                ("reconstruct", low), [low], [out])


def all_zero(folder, models):
    low, out = _volume(folder, data=np.zeros(SHAPE_XYZ, np.float32)), folder / "out"
    return Case(_predict(low, out, models), "zero or negative everywhere",
                ("reconstruct", low), [low], [out])


def _dataset(folder: Path, **mismatch) -> Path:
    root = folder / "data"
    make_subject(root / "site" / "sub-0", seed=0)
    make_subject(root / "site" / "sub-1", seed=1, with_truth=False, **mismatch)
    return root


def shape_mismatch(folder, models):
    root = _dataset(folder, full_shape=(24, 20, 10))
    return Case(["info", str(root)], "must be on the same voxel grid", ("dataset", root),
                sorted(root.rglob("*.*")))


def affine_mismatch(folder, models):
    shifted = ANISO_AFFINE.copy()
    shifted[0, 3] += 1.5
    root = _dataset(folder, full_affine=shifted)
    return Case(["info", str(root)], "different affines", ("dataset", root),
                sorted(root.rglob("*.*")))


def layer_shape_mismatch(folder, models):
    # low and full of another grid chosen together: finetune refuses, the compare dock too
    root = _dataset(folder, full_shape=(24, 20, 10))
    low = root / "site" / "sub-1" / "low.nii.gz"
    full = root / "site" / "sub-1" / "full.nii.gz"
    out = folder / "adapter"
    cli = ["finetune", "--data", str(root), "--target", "site", "--base", str(models.base),
           "--steps", "1", "--device", "cpu", "--n-val", "0", "--n-test", "0", "--out", str(out),
           "--strict"]
    return Case(cli, "must be on the same voxel grid", ("reconstruct", low, full),
                sorted(root.rglob("*.*")), [out], gui_message="choose the matching full-count")


def smaller_than_patch(folder, models):
    low, out = _volume(folder, data=pet_like((8, 8, 8))), folder / "out"
    return Case(_predict(low, out, models), "less than half the network's window",
                ("reconstruct", low), [low], [out])


def gb_class_volume(folder, models):
    # the header declares 2 GiB of float32; the body is a few bytes (nothing is allocated)
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), ANISO_AFFINE)
    img.header.set_data_shape(GB_CLASS_XYZ)
    path = folder / "huge.nii"
    with open(path, "wb") as fh:
        img.header.write_to(fh)
        fh.write(b"\0" * 64)
    out = folder / "out"
    return Case(_predict(path, out, models), "of memory but only 1.0 GB", ("reader", path),
                [path], [out], env={"PETITE_MAX_MEMORY": "1G"})


def inference_too_big(folder, models):
    # reads fine, but the whole-volume sliding window would not fit: refused before allocating
    low, out = _volume(folder), folder / "out"
    return Case(_predict(low, out, models), "Reconstructing", ("reconstruct", low), [low],
                [out], env={"PETITE_MAX_MEMORY": "8M"})


def adapter_other_base(folder, models):
    low, out = _volume(folder), folder / "out"
    cli = _predict(low, out, models, "--adapter", str(models.adapter))
    cli[cli.index(str(models.base))] = str(models.other)
    return Case(cli, "sha256", ("adapter", models.adapter, models.other), [low], [out])


def adapter_other_backbone(folder, models):
    low, out = _volume(folder), folder / "out"
    return Case(_predict(low, out, models, "--adapter", str(models.adapter_unetr)),
                "holds a cvtgan model, not unetr", ("adapter", models.adapter_unetr,
                                                    models.base), [low], [out],
                gui_message="trained on a unetr base .* not on the chosen cvtgan base")


def _copy_bundle(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in src.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def corrupted_safetensors(folder, models):
    # a damaged header whose card was updated with it: the safetensors parser must refuse
    bundle = _copy_bundle(models.adapter, folder / "adapter")
    weights = bundle / "adapter.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])
    card = json.loads((bundle / "adapter.json").read_text())
    card["adapter_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (bundle / "adapter.json").write_text(json.dumps(card))
    low, out = _volume(folder), folder / "out"
    return Case(_predict(low, out, models, "--adapter", str(bundle)),
                "cannot be read as safetensors", ("adapter", bundle, models.base),
                [low, *bundle.iterdir()], [out])


def wrong_type_sidecar(folder, models):
    path = _volume(folder)
    (folder / "scan.json").write_text('["Bq/mL"]')
    return Case(["info", str(path)], "must hold a JSON object", ("reader", path),
                [path, folder / "scan.json"])


def wrong_type_adapter_card(folder, models):
    bundle = _copy_bundle(models.adapter, folder / "adapter")
    (bundle / "adapter.json").write_text('["napari-petite-adapter"]')
    low, out = _volume(folder), folder / "out"
    return Case(_predict(low, out, models, "--adapter", str(bundle)),
                "is not a napari-petite adapter card", ("adapter", bundle, models.base),
                [low, *bundle.iterdir()], [out])


def unwritable_output(folder, models):
    low = _volume(folder)
    dest = UNWRITABLE / "recon.nii.gz"
    return Case(_predict(low, UNWRITABLE, models), "not writable", ("export", low, dest), [low],
                [UNWRITABLE])


def disk_full(folder, models):
    low, out = _volume(folder), folder / "out"
    return Case(_predict(low, out, models), "Nothing was written under that name",
                ("export", low, out / "recon.nii.gz", "disk-full"), [low],
                [_recon_name(low, out), out / "recon.nii.gz"], disk_limit=4096,
                gui_message="No space left on device")


def spaces_and_unicode(folder, models):
    sub = folder / "PET données ü" / "séance 1"
    low = _volume(sub, name="scan 1 é.nii.gz")
    (sub / "scan 1 é.json").write_text(json.dumps({"Units": "Bq/mL"}))
    out = folder / "résultats ü"
    return Case(_predict(low, out, models), "", ("export", low, out / "recon ü 1.nii.gz"),
                [low, sub / "scan 1 é.json"], [_recon_name(low, out)], ok=True)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def dicom_case(kind: str):
    """A bad DICOM PET series (or a non-PET one): the reader in napari, `petite info`."""

    def build(folder: Path, models: Models) -> Case:
        from dicom_fixtures import AXIAL, oblique, pet_volume, write_pet_series

        series = folder / "dicom"
        kw: dict = {"spacing": (2.0, 1.5, 1.25)}
        if kind == "ct":
            kw["modality"], words = "CT", "not PET"
        elif kind == "gap":
            kw["offsets"], words = [0, 2, 4, 8, 10, 12], "missing 1 slice"
        elif kind == "mixed":
            tilted = oblique(0, 15)
            kw["extra_tags"] = {"ImageOrientationPatient": lambda k: [
                round(v, 8) for v in (tilted if k == 2 else AXIAL)]}
            words = "mixes slice orientations"
        write_pet_series(series, pet_volume(), **kw)
        if kind == "truncated":
            victim = _files(series)[2]
            victim.write_bytes(victim.read_bytes()[:-37])
            words = "pixel data"
        return Case(["info", str(series)], words, ("reader", series), _files(series))

    return build


def overlapping_dynamic(folder: Path, models: Models) -> Case:
    dyn = write_nifti(folder / "dyn.nii.gz", np.stack([pet_like(SHAPE_XYZ)] * 3, axis=-1))
    (folder / "dyn.json").write_text(json.dumps({"FrameTimesStart": [0, 200, 600],
                                                 "FrameDuration": [300, 300, 300]}))
    out = folder / "data" / "site" / "dyn"
    return Case(["make-pairs", str(dyn), "--out", str(out)], "overlap",
                ("pairs", dyn, folder / "data"), [dyn, folder / "dyn.json"], [out])


CATALOG: dict[str, Callable[[Path, Models], Case]] = {
    "DICOM folder of CT, not PET": dicom_case("ct"),
    "DICOM series with a missing slice": dicom_case("gap"),
    "DICOM series with mixed orientations": dicom_case("mixed"),
    "truncated DICOM file": dicom_case("truncated"),
    "dynamic scan with overlapping frames": overlapping_dynamic,
    "non-NIfTI file": non_nifti,
    "truncated .nii.gz": reader_case("truncated", "predict"),
    "2D volume": reader_case("2D", "info"),
    "4D volume": reader_case("4D", "predict"),
    "NaN voxels": reader_case("NaN", "predict"),
    "Inf voxels": reader_case("Inf", "info"),
    "small negative values (OSEM)": osem_negatives,
    "negative everywhere": all_negative,
    "all-zero volume": all_zero,
    "low/full shape mismatch (dataset)": shape_mismatch,
    "low/full affine mismatch (dataset)": affine_mismatch,
    "low/full shape mismatch (training, layers)": layer_shape_mismatch,
    "volume smaller than a patch": smaller_than_patch,
    "2 GB-class volume (reading)": gb_class_volume,
    "2 GB-class volume (inference)": inference_too_big,
    "adapter for another base": adapter_other_base,
    "adapter for another backbone": adapter_other_backbone,
    "corrupted safetensors": corrupted_safetensors,
    "wrong-type JSON sidecar": wrong_type_sidecar,
    "wrong-type adapter card": wrong_type_adapter_card,
    "unwritable output folder": unwritable_output,
    "disk full during export": disk_full,
    "path with spaces and unicode": spaces_and_unicode,
}
NAMES = list(CATALOG)


def digest(paths) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


# -- CLI -----------------------------------------------------------------------------------
def _limit_file_size(limit: int):
    def preexec():  # a full disk, seen by the process as EFBIG on write (no root needed)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return preexec


def _run_cli(case: Case):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **case.env}
    return subprocess.run([sys.executable, "-m", "napari_petite.cli", *case.cli],
                          capture_output=True, text=True, timeout=300, env=env,
                          preexec_fn=_limit_file_size(case.disk_limit) if case.disk_limit
                          else None)


@pytest.fixture(scope="module")
def cli_results(models, tmp_path_factory):
    """Every case through the CLI, two processes at a time (start-up is mostly imports)."""
    root = tmp_path_factory.mktemp("catalog-cli")
    cases = {}
    for k, name in enumerate(NAMES):
        folder = root / f"case-{k:02d}"
        folder.mkdir()
        case = CATALOG[name](folder, models)
        cases[name] = (case, digest(case.inputs))
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(NAMES, pool.map(_run_cli, [cases[n][0] for n in NAMES]), strict=True))
    return {n: (cases[n][0], cases[n][1], runs[n], digest(cases[n][0].inputs)) for n in NAMES}


def test_catalog_is_large_enough():
    assert len(CATALOG) >= 15


@pytest.mark.parametrize("name", NAMES)
def test_cli(cli_results, name):
    case, before, run, after = cli_results[name]
    assert "Traceback" not in run.stderr, run.stderr
    assert after == before  # inputs byte-identical
    if case.ok:
        assert run.returncode == 0, run.stderr
        for final in case.finals:
            assert final.is_file(), final
        return
    assert run.returncode == 2, (run.returncode, run.stderr)
    errors = [line for line in run.stderr.splitlines() if line.startswith("petite: error:")]
    assert len(errors) == 1, run.stderr
    tail = run.stderr[run.stderr.index("petite: error:"):].rstrip()
    if not re.search(r"has \d+ problems?:$", errors[0]):  # dataset checks list every problem
        assert tail == errors[0]  # one line, and the last thing printed
    assert re.search(case.message, tail), run.stderr
    for final in case.finals:
        assert not final.exists(), final
        if final.parent.is_dir():  # not even a partial file beside it
            assert not [p for p in final.parent.iterdir() if final.name in p.name]


# -- GUI -----------------------------------------------------------------------------------
def _errors() -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.ERROR]


@dataclass
class Gui:
    viewer: object
    qtbot: object
    models: Models
    tune: object = None
    comp: object = None

    def docks(self):
        if self.comp is None:
            _, self.tune = self.viewer.window.add_plugin_dock_widget("napari-petite",
                                                                     "Fine-tune")
            _, self.comp = self.viewer.window.add_plugin_dock_widget("napari-petite",
                                                                     "Reconstruct & compare")
            self.tune.set_base(self.models.base)
        return self.tune, self.comp

    def open(self, path: Path):
        layers = self.viewer.open(str(path), plugin="napari-petite")
        assert len(layers) == 1, _errors()[-1:]
        return layers[0]

    def reconstruct(self, low: Path, full: Path | None = None):
        _, comp = self.docks()
        low_layer = self.open(low)
        comp.low.setCurrentText(low_layer.name)
        if full is not None:
            full_layer = self.open(full)
            comp.full.setCurrentText(full_layer.name)
        comp.model.setCurrentIndex(comp.model.findData("base model"))
        comp.reconstruct()
        self.qtbot.waitUntil(lambda: comp.is_idle, timeout=60_000)
        return comp


def gui_reader(gui: Gui, path: Path):
    assert gui.viewer.open(str(path), plugin="napari-petite") == []
    assert len(gui.viewer.layers) == 0


def gui_reconstruct(gui: Gui, low: Path, full: Path | None = None):
    from napari_petite._widgets.model_choice import BASE, recon_name

    gui.reconstruct(low, full)
    return recon_name(BASE) in gui.viewer.layers


def gui_dataset(gui: Gui, root: Path):
    _, data = gui.viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    assert data.open_dataset(root)  # valid subjects open; the broken one is listed, skipped
    assert [s.id for s in data.session.dataset.scanner("site").subjects] == ["sub-0"]
    return data.problems.text()


def gui_adapter(gui: Gui, bundle: Path, base: Path):
    tune, _ = gui.docks()
    tune.set_base(base)
    tune.load_adapter(bundle)
    gui.qtbot.waitUntil(lambda: tune.is_idle, timeout=60_000)
    assert tune.session.trained is None and tune.run.start_button.isEnabled()


def gui_export(gui: Gui, low: Path, dest: Path, fault: str | None = None):
    import nibabel.openers

    comp = gui.reconstruct(low)
    if fault == "disk-full":
        real_write = nibabel.openers.Opener.write
        written = {"n": 0}

        def full_disk(self, data):  # the device fills up after the first kilobyte
            if written["n"] > 1024:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written["n"] += len(data)
            return real_write(self, data)

        nibabel.openers.Opener.write = full_disk
        try:
            return _written(gui, comp.export_nifti(dest))
        finally:
            nibabel.openers.Opener.write = real_write
    return _written(gui, comp.export_nifti(dest))


def _written(gui: Gui, task):
    """What an export written in a worker gave: its path, or None (refused, failed)."""
    if task is None:
        return None
    gui.qtbot.waitUntil(lambda: not task.running, timeout=60_000)
    return task.result if isinstance(task.result, Path) else None


def gui_pairs(gui: Gui, dynamic: Path, root: Path):
    """The Scanner data dock's "Add a subject from a dynamic scan" on a dataset."""
    make_subject(root / "site" / "sub-0", shape_xyz=SHAPE_XYZ)
    _, data = gui.viewer.window.add_plugin_dock_widget("napari-petite", "Scanner data")
    assert data.open_dataset(root)
    data.target.setCurrentText("site")
    data.add_dynamic_subject(dynamic)
    gui.qtbot.waitUntil(lambda: data.is_idle, timeout=60_000)
    assert not (root / "site" / "dyn").exists()


GUI_ROUTES = {"reader": gui_reader, "reconstruct": gui_reconstruct, "dataset": gui_dataset,
              "adapter": gui_adapter, "export": gui_export, "pairs": gui_pairs}


def _check_gui_case(gui: Gui, case: Case, name: str, monkeypatch) -> None:
    before = digest(case.inputs)
    route, *args = case.gui
    n_errors = len(_errors())
    with monkeypatch.context() as patch:
        for key, value in case.env.items():
            patch.setenv(key, value)
        result = GUI_ROUTES[route](gui, *args)
    errors = _errors()[n_errors:]
    if case.ok:
        assert not errors, errors
        assert result is True if route == "reconstruct" else Path(result).is_file()
    elif route == "dataset":
        assert re.search(case.message, result)  # the dock lists skipped subjects with the reason
    else:
        assert errors, "no error notification"
        assert re.search(case.gui_message or case.message, errors[-1]), errors[-1]
        assert "Traceback" not in errors[-1] and "\n" not in errors[-1]
        assert not result  # no layer, no reconstruction, no exported file
    assert digest(case.inputs) == before
    for final in [] if case.ok else case.finals:
        assert not final.exists(), final
    gui.viewer.layers.clear()


@pytest.mark.gui
@pytest.mark.parametrize("route", list(GUI_ROUTES))
def test_gui(make_napari_viewer, qtbot, models, tmp_path, monkeypatch, route):
    """Every case of one route, one after another in the same viewer and docks: each failure
    leaves them usable for the next case, and a good volume reconstructs at the end."""
    gui = Gui(make_napari_viewer(), qtbot, models)
    failures = []
    for k, name in enumerate(NAMES):
        folder = tmp_path / f"case-{k:02d}"
        folder.mkdir()
        case = CATALOG[name](folder, models)
        if case.gui[0] != route:
            continue
        try:
            _check_gui_case(gui, case, name, monkeypatch)
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    assert not failures, "\n".join(failures)
    assert gui_reconstruct(gui, _volume(tmp_path / "afterwards"))


# -- the memory estimate behind the 2 GB-class cases ----------------------------------------
def test_reading_estimate_bounds_the_real_peak(tmp_path):
    """The header-only estimate covers what reading really allocates (numpy reports its
    allocations to tracemalloc), without overstating it wildly."""
    import tracemalloc

    from napari_petite.io.nifti import read_bytes, read_volume

    for dtype, name in ((np.float32, "f.nii.gz"), (np.int16, "i.nii")):
        path = write_nifti(tmp_path / name, (pet_like((64, 60, 48)) / 4).astype(dtype))
        tracemalloc.start()
        read_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        estimate = read_bytes((64, 60, 48), np.dtype(dtype))
        assert 0.4 * estimate < peak <= estimate, (dtype, peak, estimate)


@pytest.mark.parametrize(("text", "size"), [("8G", 8 << 30), ("512M", 512 << 20),
                                            ("1.5GiB", int(1.5 * (1 << 30))), ("4096", 4096)])
def test_memory_limit_parses(text, size):
    from napari_petite.io.memory import parse_size

    assert parse_size(text) == size


def test_bad_memory_limit_is_a_sentence(monkeypatch):
    from napari_petite.errors import InputError
    from napari_petite.io.memory import available_bytes

    monkeypatch.setenv("PETITE_MAX_MEMORY", "lots")
    with pytest.raises(InputError, match="write it like 8G"):
        available_bytes()
    monkeypatch.setenv("PETITE_MAX_MEMORY", "2G")
    assert available_bytes() <= 2 << 30
