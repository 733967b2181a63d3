"""Scanner profiles (cited numbers, validation) and anatomy phantoms (seeded, labelled)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_petite.errors import ConfigError
from napari_petite.simulate.anatomy import LABEL_ID, load_templates, make_phantom
from napari_petite.simulate.profiles import (
    available_ids,
    load_profile,
    load_profile_file,
    profiles_dir,
)

SCANNERS = ["dmi", "mct", "uexplorer", "vereos", "vision"]


def test_five_real_scanners_with_a_source_per_number():
    assert available_ids() == SCANNERS
    for sid in SCANNERS:
        doc = json.loads((profiles_dir() / f"{sid}.json").read_text())
        numbers = {k: v for k, v in doc.items() if isinstance(v, dict)}
        assert len(numbers) >= 14
        for key, entry in numbers.items():
            assert set(entry) == {"value", "source"}, (sid, key)
            assert len(entry["source"]) > 20, (sid, key)
        load_profile(sid)


def test_scanners_differ_like_real_sites():
    profiles = [load_profile(s) for s in SCANNERS]
    for attr in ("fwhm_mm", "tof_fwhm_ps", "relative_counts", "native_grid", "postfilter_mm"):
        values = [getattr(p, attr) for p in profiles]
        assert len({str(v) for v in values}) >= 3, attr
    small = [p.grid("small") for p in profiles]
    assert len({g.shape for g in small}) >= 4
    for g in small:
        assert g.shape[1] == g.shape[2] >= 64 and g.shape[0] >= 32
    # small keeps the native field of view
    for p, g in zip(profiles, small, strict=True):
        np.testing.assert_allclose(g.extent_mm, p.native_grid.extent_mm, rtol=1e-6)
    assert load_profile("uexplorer").sensitivity_cps_per_kbq > 100  # long axial FOV


def test_unknown_id_and_uncited_numbers_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="Unknown scanner id 'xyz'"):
        load_profile("xyz")
    doc = json.loads((profiles_dir() / "mct.json").read_text())
    doc["id"] = "bad"
    doc["tof_fwhm_ps"] = {"value": 555}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="no cited source"):
        load_profile_file(tmp_path / "bad.json")
    doc["tof_fwhm_ps"] = {"value": "fast", "source": "a long enough source text"}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="wrong type"):
        load_profile_file(tmp_path / "bad.json")


def test_templates_are_the_committed_icbm_derivatives():
    tpl = load_templates()
    assert tpl.gm.shape == (99, 117, 95)
    np.testing.assert_allclose(np.diag(tpl.affine)[:3], 2.0)
    volume_ml = {k: float(getattr(tpl, k).sum()) * 8 / 1000 for k in ("gm", "wm", "brain")}
    assert 500 < volume_ml["gm"] < 1100 and 300 < volume_ml["wm"] < 800, volume_ml
    assert volume_ml["brain"] > volume_ml["gm"] + volume_ml["wm"]


def test_phantom_is_seeded_and_labelled():
    a = make_phantom(np.random.default_rng(4), lesions=2, hypometabolism=True)
    b = make_phantom(np.random.default_rng(4), lesions=2, hypometabolism=True)
    c = make_phantom(np.random.default_rng(5), lesions=0, hypometabolism=False)
    np.testing.assert_array_equal(a.activity, b.activity)
    assert not np.array_equal(a.activity, c.activity)
    assert len(a.params["lesions"]) == 2 and a.params["hypometabolism"]
    present = set(np.unique(a.labels).tolist())
    for name in ("grey matter", "white matter", "csf", "cerebellar cortex", "putamen",
                 "thalamus", "skull", "scalp", "hypometabolism"):
        assert LABEL_ID[name] in present, name
    assert {LABEL_ID["hot lesion"], LABEL_ID["cold lesion"]} & present
    suv = a.activity * a.suv_factor
    gm = suv[a.labels == LABEL_ID["grey matter"]].mean()
    wm = suv[a.labels == LABEL_ID["white matter"]].mean()
    assert 5.0 < gm < 11.0 and 2.0 < gm / wm < 4.5
    # the attenuation map: bone denser than brain, air zero
    assert a.mu[a.labels == LABEL_ID["skull"]].mean() > a.mu[a.labels == 2].mean() > 0.009
    assert a.mu[a.labels == 0].max() < 0.0097
    # the random placement stays within the stated ranges
    assert all(abs(s - 1) <= 0.08 for s in a.params["affine_scale"])
    assert all(abs(r) <= 6 for r in a.params["affine_rotation_deg"])
    assert all(abs(t) <= 4 for t in a.params["affine_shift_mm"])
