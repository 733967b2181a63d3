"""Never lose a user's data: every case of the break-it pass, as a real ``petite`` process.

Each case builds its own files, hashes every file under its folder (hidden ones included),
runs the command and checks the outcome: the exit code, the one sentence on stderr (never a
traceback), the inputs byte-identical, no output where none may be, and no litter (hidden
partial files, reservation locks, empty ``.resume`` folders) left behind. The cases run two
processes at a time; most of them are refused before a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import ANISO_AFFINE, make_subject, pet_like, write_nifti
from test_hardening_catalog import _bundle, _tiny

SHAPE_XYZ = (40, 36, 34)  # a few 32^3 windows of the tiny bases
DEEP = "[" * 100_000 + "]" * 100_000  # Python's JSON parser recurses once per level


@dataclass
class Models:
    base: Path
    adapter: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    root = tmp_path_factory.mktemp("safety-models")
    base = _tiny("cvtgan", root / "base.safetensors", 0)
    return Models(base=base, adapter=_bundle(base, root / "adapter"))


def dataset(root: Path, n: int = 4) -> Path:
    for k in range(n):
        make_subject(root / "site" / f"sub-{k}", seed=k, shape_xyz=SHAPE_XYZ, with_truth=False)
    return root


def volume(folder: Path, name: str = "scan.nii.gz", affine=ANISO_AFFINE) -> Path:
    return write_nifti(folder / name, pet_like(SHAPE_XYZ), affine)


def finetune(data: Path, out: Path, models: Models, *extra: str) -> list[str]:
    return ["finetune", "--data", str(data), "--target", "site", "--base", str(models.base),
            "--steps", "1", "--batch", "1", "--val-every", "0", "--device", "cpu",
            "--out", str(out), *extra]


def predict(low: Path, out: Path, models: Models, *extra: str) -> list[str]:
    return ["predict", str(low), "--base", str(models.base), "--device", "cpu", "--out",
            str(out), *extra]


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def litter(folder: Path) -> list[str]:
    """Hidden partial files, old copies and reservation locks the tool may leave."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if re.search(r"\.partial|\.old-|\.petite-lock$", p.name))


@dataclass
class Case:
    """One command, what it must answer, and what must hold afterwards."""

    args: list[str]
    message: str  # regex expected on stderr ("" with code 0: nothing in particular)
    code: int = 2
    env: dict = field(default_factory=dict)
    absent: list[Path] = field(default_factory=list)  # must not exist afterwards
    changes: list[str] = field(default_factory=list)  # files it may create (relative)
    check: Callable[[subprocess.CompletedProcess], None] | None = None
    disk_limit: int | None = None


# -- the catalog: one builder per case of the issue, and their families ---------------------
def overwrite_dataset(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    return Case(finetune(data, data, models, "--overwrite"), "it is an input of this command")


def overwrite_base_folder(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    folder = tmp / "models"
    folder.mkdir()
    for src in (models.base, models.base.with_suffix(".json")):
        (folder / src.name).write_bytes(src.read_bytes())
    args = finetune(data, folder, models, "--overwrite")
    args[args.index("--base") + 1] = str(folder / models.base.name)
    return Case(args, "it contains an input of this command")


def out_inside_dataset(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    return Case(finetune(data, data / "site" / "adapter", models),
                "it lies inside an input of this command", absent=[data / "site" / "adapter"])


def out_through_symlink(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    (tmp / "link").symlink_to(data)
    return Case(finetune(data, tmp / "link", models, "--overwrite"),
                "it is an input of this command", changes=[])


def overwrite_foreign_folder(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    mine = tmp / "my-results"
    mine.mkdir()
    (mine / "notes.txt").write_text("a clinician's own notes")
    return Case(finetune(data, mine, models, "--overwrite"), "was not written by napari-petite")


def sample_data_over_home(tmp: Path, models: Models) -> Case:
    home = tmp / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    return Case(["make-sample-data", "--out", str(home), "--overwrite", "--subjects", "1"],
                "was not written by napari-petite")


def sidecar_rewritten(tmp: Path, models: Models) -> Case:
    low = volume(tmp, "low.nii.gz")
    (tmp / "low.json").write_text(json.dumps({"Units": "Bq/mL"}))
    out = tmp / "out"
    out.mkdir()
    (out / "low_recon.json").write_text('{"mine": true}')
    return Case(predict(low, out, models), "low_recon.json already exists",
                absent=[out / "low_recon.nii.gz"])


def existing_out_file(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    (tmp / "taken").write_text("a file")
    return Case(finetune(data, tmp / "taken", models, "--checkpoint-every", "1"),
                "exists and is not a folder", absent=[tmp / "taken.resume"],
                check=_not_trained)


def read_only_out_with_checkpoints(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    return Case(finetune(data, Path("/sys/petite-out"), models, "--checkpoint-every", "1"),
                "not writable", check=_not_trained)


def _not_trained(run) -> None:
    assert "validation PSNR" not in run.stderr and "step/s" not in run.stderr


def disk_full_bundle(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    out = tmp / "adapter"
    return Case(finetune(data, out, models, "--checkpoint-every", "1"),
                "Could not write .*: .*Nothing was (written|left) under that name",
                disk_limit=2048, absent=[out, tmp / "adapter.resume"])


def option_case(*bad: str, message: str, env: dict | None = None, cmd: str = "finetune"):
    def build(tmp: Path, models: Models) -> Case:
        data = dataset(tmp / "data", n=1)
        if cmd == "pretrain":
            args = ["pretrain", "--data", str(data), "--source", "site", "--backbone",
                    "cvtgan", "--out", str(tmp / "base.safetensors"), *bad]
        else:
            args = finetune(data, tmp / "adapter", models, *bad)
        return Case(args, message, env=env or {}, absent=[tmp / "adapter"], check=_not_trained)

    return build


def big_batch(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    return Case(finetune(data, tmp / "adapter", models, "--batch", "512"),
                "training step of 512 patches .* needs about .* of memory",
                env={"PETITE_MAX_MEMORY": "2G"}, absent=[tmp / "adapter"])


def deep_scanner_json(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    (data / "site" / "scanner.json").write_text(DEEP)
    return Case(["info", str(data)], "nests its JSON too deeply")


def deep_sidecar(tmp: Path, models: Models) -> Case:
    scan = volume(tmp)
    (tmp / "scan.json").write_text(DEEP)
    return Case(["info", str(scan)], "nests its JSON too deeply")


def _adapter_copy(models: Models, dest: Path, edit: Callable[[dict, Path], None]) -> Path:
    dest.mkdir()
    for f in models.adapter.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    card = json.loads((dest / "adapter.json").read_text())
    edit(card, dest)
    (dest / "adapter.json").write_text(json.dumps(card))
    return dest


def adapter_case(edit: Callable[[dict, Path], None], message: str):
    def build(tmp: Path, models: Models) -> Case:
        adapter = _adapter_copy(models, tmp / "adapter", edit)
        low, out = volume(tmp), tmp / "out"
        return Case(predict(low, out, models, "--adapter", str(adapter)), message,
                    absent=[out])

    return build


def _null_params(card, folder):
    card["spec"]["params"] = None


def _no_sha(card, folder):
    del card["adapter_sha256"]


def _nan_tensors(card, folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "adapter.safetensors"))
    tensors = {k: v.fill_(float("nan")) if v.is_floating_point() else v
               for k, v in tensors.items()}
    save_file(tensors, str(folder / "adapter.safetensors"))
    card["adapter_sha256"] = hashlib.sha256(
        (folder / "adapter.safetensors").read_bytes()).hexdigest()


def deep_adapter_card(tmp: Path, models: Models) -> Case:
    adapter = _adapter_copy(models, tmp / "adapter", lambda card, folder: None)
    (adapter / "adapter.json").write_text(DEEP)
    low, out = volume(tmp), tmp / "out"
    return Case(predict(low, out, models, "--adapter", str(adapter)),
                "nests its JSON too deeply", absent=[out])


def incomplete_resume(tmp: Path, models: Models) -> Case:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    data = dataset(tmp / "data")
    folder = tmp / "run.resume"
    done = subprocess.run([sys.executable, "-m", "napari_petite.cli",
                           *finetune(data, tmp / "run", models, "--checkpoint-every", "1")],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr
    with safe_open(str(folder / "resume.safetensors"), framework="pt") as fh:
        meta = json.loads(fh.metadata()["resume"])
    del meta["scheduler"]
    tensors = load_file(str(folder / "resume.safetensors"))
    save_file(tensors, str(folder / "resume.safetensors"), metadata={"resume": json.dumps(meta)})
    (folder / "resume.json").write_text(json.dumps(meta))
    return Case(finetune(data, tmp / "again", models, "--resume", str(folder), "--steps", "2"),
                "is incomplete \\(missing scheduler\\)", absent=[tmp / "again"])


def _pixdim(path: Path, k: int, value: float) -> Path:
    """Write pixdim[k] straight into the header bytes (nibabel would repair it on save)."""
    raw = bytearray(path.read_bytes())
    raw[76 + 4 * k:80 + 4 * k] = struct.pack("<f", value)
    path.write_bytes(bytes(raw))
    return path


def _qform_volume(folder: Path, name: str = "scan.nii") -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(pet_like(SHAPE_XYZ), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.set_sform(None, 0)
    img.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), 1)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(folder / name))
    return folder / name


def geometry_case(kind: str):
    def build(tmp: Path, models: Models) -> Case:
        if kind in ("zero", "negative", "nan"):
            value = {"zero": 0.0, "negative": -2.0, "nan": float("nan")}[kind]
            path = _pixdim(_qform_volume(tmp), 1, value)
            word = {"zero": "0 mm", "negative": "-2 mm", "nan": "NaN"}[kind]
            return Case(["info", str(path)], f"voxel size \\(pixdim\\) of {word}")
        affine = np.array(ANISO_AFFINE)
        if kind == "singular":
            affine[:3, 2] = affine[:3, 1]
            message = "collinear voxel axes"
        else:
            affine[0, 2] = 1.0
            message = "sheared grid"
        return Case(["info", str(volume(tmp, affine=affine))], message)

    return build


def geometry_in_dataset(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    _pixdim(_qform_volume(data / "site" / "sub-9", "low.nii"), 2, 0.0)
    _qform_volume(data / "site" / "sub-9", "full.nii")
    return Case(["info", str(data)],
                "sub-9/low.nii: low.nii gives a voxel size \\(pixdim\\) of 0 mm")


def untidy_dataset(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    (data / "site" / "sub-2" / "full.nii.gz").unlink()
    (data / "site" / "empty").mkdir()
    adapter = data / "site" / "my-adapter"
    adapter.mkdir()
    for f in models.adapter.iterdir():
        (adapter / f.name).write_bytes(f.read_bytes())
    out = tmp / "adapter"

    def check(run) -> None:
        card = json.loads((out / "adapter.json").read_text())
        used = [s for part in card["training"]["split"].values() for s in part]
        assert "sub-2" not in used and "my-adapter" not in used and "empty" not in used
        assert "petite: warning:" in run.stderr and "sub-2: missing full.nii.gz" in run.stderr

    return Case(finetune(data, out, models, "--n-test", "1"), "", code=0,
                changes=["adapter"], check=check)


def untidy_dataset_strict(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    (data / "site" / "sub-2" / "full.nii.gz").unlink()
    return Case(finetune(data, tmp / "adapter", models, "--strict"),
                "sub-2: missing full.nii.gz", absent=[tmp / "adapter"])


def split_advice(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data", n=2)
    return Case(finetune(data, tmp / "adapter", models, "--n-val", "1", "--n-test", "1"),
                "choose smaller --n-val/--n-test counts", absent=[tmp / "adapter"])


def stale_partials_cleaned(tmp: Path, models: Models) -> Case:
    low, out = volume(tmp, "low.nii.gz"), tmp / "out"
    out.mkdir()
    for name in (".low_recon.nii.gz.abcd1234.partial.nii.gz", ".low_recon.nii.gz.petite-lock"):
        (out / name).write_bytes(b"left by a kill -9")

    def check(run) -> None:
        assert "removed .low_recon.nii.gz.abcd1234.partial.nii.gz" in run.stderr
        assert (out / "low_recon.nii.gz").is_file()

    return Case(predict(low, out, models), "", code=0, changes=["out/low_recon.nii.gz"],
                check=check)


def interrupted_replacement_restored(tmp: Path, models: Models) -> Case:
    data = dataset(tmp / "data")
    old = tmp / ".adapter.old-abcd1234" / "adapter"  # killed between the two renames
    old.mkdir(parents=True)
    for f in models.adapter.iterdir():
        (old / f.name).write_bytes(f.read_bytes())

    def check(run) -> None:
        assert "restored" in run.stderr
        assert (tmp / "adapter" / "adapter.json").is_file()

    return Case(finetune(data, tmp / "adapter", models, "--overwrite"), "", code=0,
                changes=["adapter"], check=check)


CATALOG: dict[str, Callable[[Path, Models], Case]] = {
    "--overwrite --out = the dataset": overwrite_dataset,
    "--overwrite --out = the folder holding the base": overwrite_base_folder,
    "--out inside the dataset": out_inside_dataset,
    "--out a symlink to the dataset": out_through_symlink,
    "--overwrite of a folder the tool did not write": overwrite_foreign_folder,
    "make-sample-data --overwrite over a user's folder": sample_data_over_home,
    "predict's sidecar is not rewritten without --overwrite": sidecar_rewritten,
    "--out an existing file, refused before training": existing_out_file,
    "read-only --out with --checkpoint-every, refused before training":
        read_only_out_with_checkpoints,
    "disk full while writing checkpoints and the bundle": disk_full_bundle,
    "--batch 0": option_case("--batch", "0", message="--batch: must be a whole number of at "
                             "least 1"),
    "--steps 0": option_case("--steps", "0", message="--steps: must be a whole number"),
    "--seed -1": option_case("--seed", "-1", message="--seed: must be a whole number from 0"),
    "--seed 2**70": option_case("--seed", str(2**70), message="--seed: must be a whole number"),
    "--lr -1": option_case("--lr", "-1", message="--lr: must be a finite number above 0"),
    "--lr nan": option_case("--lr", "nan", message="--lr: must be a finite number above 0"),
    "--lr-scale inf": option_case("--lr-scale", "inf", message="must be a finite number"),
    "--val-every -5": option_case("--val-every", "-5", message="at least 0"),
    "pretrain --override patch_size=abc": option_case(
        "--override", "patch_size=abc", cmd="pretrain",
        message="option patch_size='abc' must be a list like"),
    "PETITE_MAX_MEMORY=nan": option_case(message="must be a positive, finite size",
                                         env={"PETITE_MAX_MEMORY": "nan"}),
    "PETITE_MAX_MEMORY=inf": option_case(message="must be a positive, finite size",
                                         env={"PETITE_MAX_MEMORY": "inf"}),
    "--batch 512 over PETITE_MAX_MEMORY": big_batch,
    "deeply nested scanner.json": deep_scanner_json,
    "deeply nested sidecar": deep_sidecar,
    "deeply nested adapter.json": deep_adapter_card,
    "adapter card with params null": adapter_case(_null_params, "holds an invalid spec"),
    "adapter card without adapter_sha256": adapter_case(_no_sha, "lacks the sha256"),
    "adapter with NaN tensors": adapter_case(_nan_tensors, "holds NaN or infinite weights"),
    "resume folder with an incomplete state": incomplete_resume,
    "zero pixdim": geometry_case("zero"),
    "negative pixdim": geometry_case("negative"),
    "NaN pixdim": geometry_case("nan"),
    "singular affine": geometry_case("singular"),
    "sheared affine": geometry_case("sheared"),
    "bad geometry inside a dataset (petite info)": geometry_in_dataset,
    "untidy dataset: incomplete subject, empty folder, adapter inside": untidy_dataset,
    "untidy dataset with --strict": untidy_dataset_strict,
    "split errors name the real options": split_advice,
    "stale partials of a killed run are cleaned": stale_partials_cleaned,
    "an interrupted replacement is restored": interrupted_replacement_restored,
}
NAMES = list(CATALOG)


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _limit(limit: int):
    def preexec():  # a full disk, seen by the process as EFBIG on write
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return preexec


def _run(case: Case) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_petite.cli", *case.args],
                          capture_output=True, text=True, timeout=300, env=_env(**case.env),
                          preexec_fn=_limit(case.disk_limit) if case.disk_limit else None)


@pytest.fixture(scope="module")
def results(models, tmp_path_factory):
    """Every case as a real process, two at a time."""
    root = tmp_path_factory.mktemp("safety")
    built = {}
    for k, name in enumerate(NAMES):
        folder = root / f"case-{k:02d}"
        folder.mkdir()
        case = CATALOG[name](folder, models)
        built[name] = (folder, case, files(folder))
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(NAMES, pool.map(_run, [built[n][1] for n in NAMES]), strict=True))
    return {n: (*built[n], runs[n], files(built[n][0])) for n in NAMES}


def test_catalog_covers_the_issue():
    assert len(CATALOG) >= 35


@pytest.mark.parametrize("name", NAMES)
def test_case(results, name):
    folder, case, before, run, after = results[name]
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == case.code, (run.returncode, run.stderr)
    if case.code == 2:
        assert re.search(r"error: .*" + case.message, run.stderr, re.S), run.stderr
    # inputs untouched: every file that was there is there, byte-identical (but the leftovers
    # of an interrupted run, which the tool removes)
    kept = {k: v for k, v in before.items() if not re.search(r"/\.[^/]*(\.partial|\.old-|"
                                                             r"\.petite-lock)|^\.[^/]*\.old-", k)}
    assert {k: v for k, v in after.items() if k in kept} == kept
    created = [k for k in after if k not in before
               and not any(k.startswith(c) for c in case.changes)]
    assert not created, created
    for path in case.absent:
        assert not path.exists(), path
    assert litter(folder) == [], litter(folder)
    if case.check is not None:
        case.check(run)


# -- two runs, one destination ------------------------------------------------------------
def test_a_second_run_on_a_reserved_out_is_refused_at_once(models, tmp_path):
    """While a run holds --out (here: this test process, through the same lock), a second
    `petite finetune` on it is refused before it loads anything, and nothing is deleted."""
    from napari_petite.io.atomic import reserve

    data = dataset(tmp_path / "data")
    out = tmp_path / "adapter"
    with reserve(out, kind="folder"):
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "napari_petite.cli",
                              *finetune(data, out, models, "--steps", "50")],
                             capture_output=True, text=True, timeout=300, env=_env())
        took = time.monotonic() - started
    assert run.returncode == 2 and "being written by another napari-petite run" in run.stderr
    assert f"process {os.getpid()}" in run.stderr
    assert "validation PSNR" not in run.stderr and took < 60
    assert not out.exists() and litter(tmp_path) == []


def test_a_destination_that_appears_during_a_run_is_kept_and_so_is_the_result(tmp_path):
    """Someone creates --out while a run works: the run does not delete it; its result is
    kept under a free sibling name and the sentence says where."""
    from napari_petite.errors import OutputError
    from napari_petite.io.atomic import atomic_dir, reserve

    out = tmp_path / "adapter"
    with pytest.raises(OutputError, match=r"created or replaced by someone else .* result is "
                       r"in .*adapter\.\d{8}-\d{6}"), reserve(out, kind="folder"), \
            atomic_dir(out) as tmp:
        (tmp / "result.txt").write_text("this run's work")
        out.mkdir()
        (out / "theirs.txt").write_text("someone else's work")
    assert (out / "theirs.txt").read_text() == "someone else's work"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("adapter.")]
    assert len(kept) == 1 and (kept[0] / "result.txt").read_text() == "this run's work"
    assert litter(tmp_path) == []


def test_overwrite_replaces_only_the_run_it_reserved(tmp_path):
    """--overwrite replaces the output that was there when the command started, not one
    another writer put there since."""
    from napari_petite.errors import OutputError
    from napari_petite.io.atomic import atomic_dir, reserve

    out = tmp_path / "bundle"
    with atomic_dir(out) as tmp:  # an earlier run's output (marked as the tool's)
        (tmp / "v1").write_text("1")
    with pytest.raises(OutputError, match="created or replaced by someone else"), \
            reserve(out, kind="folder", overwrite=True), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "v3").write_text("3")
        os.rename(out, tmp_path / "moved")
        with atomic_dir(tmp_path / "other") as other:
            (other / "v2").write_text("2")
        os.rename(tmp_path / "other", out)
    assert (out / "v2").is_file() and not (out / "v1").exists()


# -- signals -------------------------------------------------------------------------------
def _terminate_when(cmd: list[str], ready: Callable[[], bool], tmp_path: Path):
    with (tmp_path / "stderr.txt").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "napari_petite.cli", *cmd], stderr=log,
                                stdout=subprocess.DEVNULL, env=_env())
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "stderr.txt").read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    return proc.returncode, (tmp_path / "stderr.txt").read_text()


def test_sigterm_during_make_sample_data_leaves_nothing(tmp_path):
    out = tmp_path / "data"

    def simulating() -> bool:  # the hidden work folder exists: the command is writing
        return any(p.name.startswith(".data.partial-") for p in tmp_path.iterdir())

    code, stderr = _terminate_when(["make-sample-data", "--out", str(out), "--scanners", "mct",
                                    "--subjects", "3"], simulating, tmp_path)
    assert code == 143 and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stderr.txt"]


def test_sigterm_during_predict_leaves_nothing(models, tmp_path):
    low = write_nifti(tmp_path / "in" / "low.nii.gz", pet_like((96, 96, 64)))
    out = tmp_path / "out"

    def reserved() -> bool:
        return (out / ".low_recon.nii.gz.petite-lock").exists()

    code, stderr = _terminate_when(predict(low, out, models), reserved, tmp_path)
    assert code == 143 and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert not out.exists() or list(out.iterdir()) == []


# -- evaluate what was held out ------------------------------------------------------------
def test_evaluate_scores_the_adapters_recorded_test_subjects(models, tmp_path):
    data = dataset(tmp_path / "data", n=5)
    out = tmp_path / "adapter"

    def petite(*args):
        return subprocess.run([sys.executable, "-m", "napari_petite.cli", *args],
                              capture_output=True, text=True, timeout=300, env=_env())

    assert petite(*finetune(data, out, models, "--n-val", "1", "--n-test", "2")).returncode == 0
    recorded = json.loads((out / "adapter.json").read_text())["training"]["split"]
    common = ["evaluate", "--data", str(data), "--target", "site", "--base", str(models.base),
              "--adapter", str(out), "--device", "cpu", "--json"]
    # other split options would pick other subjects; the adapter's own record wins
    run = petite(*common)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["subjects_chosen"] == recorded["test"]
    # a subject it trained on can be scored, but it is said
    run = petite(*common, "--subjects", recorded["train"][0])
    assert run.returncode == 0 and "not held-out results" in run.stderr
    assert json.loads(run.stdout)["seen_in_training"] == {recorded["train"][0]: "trained on"}


def test_evaluate_refuses_when_nothing_was_held_out(models, tmp_path):
    data = dataset(tmp_path / "data", n=2)
    out = tmp_path / "adapter"
    env = _env()
    done = subprocess.run([sys.executable, "-m", "napari_petite.cli",
                           *finetune(data, out, models, "--n-val", "0", "--n-test", "0")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    run = subprocess.run([sys.executable, "-m", "napari_petite.cli", "evaluate", "--data",
                          str(data), "--target", "site", "--base", str(models.base),
                          "--adapter", str(out), "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 2 and "held out no test subject" in run.stderr
