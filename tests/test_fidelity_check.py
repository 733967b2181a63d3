"""The fidelity check of Reconstruct & compare (``training/fidelity_check.py``): real simulated
subjects with inserted lesions, a real (tiny) network, counts a reader can weigh, and the
warning rule of docs/metrics.md."""

from __future__ import annotations

import json
import math

import pytest

from napari_petite.errors import ConfigError
from napari_petite.io.dataset import discover
from napari_petite.training import fidelity_check as C


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    from napari_petite.simulate.dataset import make_dataset

    root = tmp_path_factory.mktemp("fid") / "ds"
    make_dataset(root, scanners=["vereos"], subjects=2, seed=5, lesions=(3, 3))
    return discover(root).scanner("vereos")


def Scaled(factor: float):
    """A real one-parameter network that multiplies its input by ``factor``: a known, exact
    bias to check the counts against (sliding windows of a pointwise map blend exactly)."""
    import torch

    class _Scaled(torch.nn.Module):
        patch_size = (16, 16, 16)

        def __init__(self) -> None:
            super().__init__()
            self.factor = torch.nn.Parameter(torch.tensor(float(factor)))

        def forward(self, x):
            return x * self.factor

    return _Scaled()


def test_a_real_network_is_checked_on_every_subject_and_lesion(scanner):
    from napari_petite.models.registry import build_model, smoke_overrides

    model = build_model("unetr", "small", **smoke_overrides("unetr")).eval()
    ids = [s.id for s in scanner.subjects]
    seen = []
    check = C.check_models({"base": (C.BASE, model)}, scanner, ids,
                           on_subject=lambda k, n: seen.append((k, n)))
    assert seen == [(1, 2), (2, 2)]
    assert [i.role for i in check.images] == [C.INPUT, C.BASE]
    assert check.regions_from == "labels"
    low, base = check.images
    assert len(low.lesions) == len(base.lesions) >= 6  # three inserted per subject, at least
    heads, rows = check.table()
    assert heads == ["low-count", "base"]
    labels = [r[0] for r in rows]
    assert "lesion SUVmean ±5 %" in labels and "SUVR ±2 %" in labels
    sentence = check.key_sentence()
    assert sentence.startswith("base: lesion SUVmean within ±5 % of full count: ")
    assert sentence.endswith(f" of {len(base.lesions)} lesions")
    for tally in base.tallies():
        assert 0 <= tally.within <= tally.total
    assert all(math.isfinite(v) for v in (low.region_abs_bias, base.region_abs_bias))
    doc = json.loads(json.dumps(check.to_dict(), allow_nan=True))  # what reports and benches keep
    assert doc["images"][1]["n_lesions"] == len(base.lesions)


def test_counts_and_warnings_follow_a_known_bias(scanner):
    """×0.8 moves every lesion's SUVmean by −20 % of the input's: none within ±5 % of full
    count, and the model is warned about against the input and the base; the base that
    returns its input is exactly as faithful as the input and gets no warning."""
    ids = [scanner.subjects[0].id]
    check = C.check_models({"base": (C.BASE, Scaled(1.0)), "adapted": (C.ADAPTED, Scaled(0.8))},
                           scanner, ids)
    low, base, adapted = check.images
    # the base that returns the input is exactly as faithful as the input
    assert base.region_abs_bias == pytest.approx(low.region_abs_bias)
    suvmean = {t.what: t for t in adapted.tallies()}["lesion SUVmean"]
    assert suvmean.within == 0 and suvmean.total == len(adapted.lesions)
    for lesion, input_lesion in zip(adapted.lesions, low.lesions, strict=True):
        assert lesion["mean"] == pytest.approx(0.8 * input_lesion["mean"], rel=1e-4)
    warnings = check.warnings()
    assert len(warnings) == 2
    assert "adapted is less faithful than the low-count input" in warnings[0]
    assert "adapted is less faithful than the base" in warnings[1]
    assert "mean |lesion SUVmean bias|" in warnings[0]
    assert not any(w.startswith("⚠ base") for w in warnings)
    assert check.heading().startswith("Fidelity on 1 validation subject of vereos")


def test_an_image_as_faithful_as_the_reference_is_not_warned_about(scanner):
    check = C.check_models({"base": (C.BASE, Scaled(1.0)),
                            "adapted": (C.ADAPTED, Scaled(1.0))},
                           scanner, [scanner.subjects[0].id])
    assert check.warnings() == []


def test_the_rule_is_more_than_one_point_worse():
    def image(region: float, lesion: float, suvr: tuple = ()) -> C.ImageFidelity:
        subject = {"summary": {"region_abs_bias_pct": region}, "regional_bias_pct": {},
                   "suvr_bias_pct": dict(enumerate(suvr)), "lesions": [{"mean_bias_pct": lesion}],
                   "psnr": 30.0, "ssim": 0.9}
        return C.ImageFidelity("x", C.ADAPTED, [subject])

    assert C.less_faithful(image(3.0, 2.0), image(2.0, -1.5)) == []  # exactly 1 point: kept
    worse = C.less_faithful(image(3.01, -4.0), image(2.0, 2.0))
    assert worse == ["mean |regional bias| 3.0 % against 2.0 %",
                     "mean |lesion SUVmean bias| 4.0 % against 2.0 %"]
    assert C.less_faithful(image(math.nan, 9.0), image(1.0, math.nan)) == []
    # SUVR (the ratios an amyloid or FDG dementia read rests on): |−3| and |+4| against |1|
    assert C.less_faithful(image(2.0, 1.0, (-3.0, 4.0)), image(2.0, 1.0, (1.0, -1.0))) == \
        ["mean |SUVR bias| 3.5 % against 1.0 %"]
    assert C.less_faithful(image(2.0, 1.0, (2.0, -2.0)), image(2.0, 1.0, (1.0, -1.0))) == []


def test_stopping_and_no_subject_are_sentences(scanner):
    with pytest.raises(C.CheckStopped):
        from napari_petite.models.registry import build_model, smoke_overrides

        model = build_model("unetr", "small", **smoke_overrides("unetr")).eval()
        C.check_models({"m": (C.ADAPTED, model)}, scanner, [scanner.subjects[0].id],
                       should_stop=lambda: True)
    with pytest.raises(ConfigError, match="no validation subject"):
        C.check_models({}, scanner, [])
