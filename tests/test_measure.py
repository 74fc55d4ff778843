import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinct.training import measure

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
needs_shared = pytest.mark.skipif(
    not (SHARED / "bench" / "hintsim.py").exists() or not (SHARED / "data" / "eval").is_dir(),
    reason=f"the shared measuring protocol and photos are not at {SHARED}",
)


@pytest.fixture(scope="module")
def hintsim():
    """The reference protocol, loaded by path (never copied into the project)."""
    spec = importlib.util.spec_from_file_location("hintsim", SHARED / "bench" / "hintsim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos():
    return list(itertools.islice(measure.eval_images(SHARED / "data" / "eval"), 0, 42, 10))


@needs_shared
def test_eval_images_are_named_resized_rgb(photos):
    assert [name for name, _ in photos] == ["kodak24/kodim01", "kodak24/kodim11", "kodak24/kodim21",
                                            "mcmaster18/mcm07", "mcmaster18/mcm17"]
    for _, rgb in photos:
        assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8


@needs_shared
def test_grey_input_matches_reference(hintsim, photos):
    for name, rgb in photos:
        grey = measure.gray_of(rgb)
        assert np.array_equal(grey, hintsim.gray_of(rgb)), name
        assert np.abs(grey.astype(int) - grey[..., :1]).max() <= 1  # neutral up to the 1e-4 white mismatch


@needs_shared
@pytest.mark.parametrize("n", [0, 1, 10, 100, 500])
def test_same_seed_gives_the_reference_hints_layer(hintsim, photos, n):
    for i, (name, rgb) in enumerate(photos):
        ours = measure.hints_of(rgb, n, np.random.default_rng(i))
        ref = hintsim.hints_of(rgb, n, np.random.default_rng(i))
        assert np.array_equal(ours, ref), name
        assert (ours[..., 3] > 0).sum() <= 36 * n and ((ours[..., 3] > 0).sum() > 0) == (n > 0)


@needs_shared
def test_non_square_photo_and_other_patch_size_match_reference(hintsim):
    rgb = np.random.default_rng(7).integers(0, 256, (50, 90, 3)).astype(np.uint8)
    ours = measure.hints_of(rgb, 40, np.random.default_rng(3), patch=3)
    assert np.array_equal(ours, hintsim.hints_of(rgb, 40, np.random.default_rng(3), patch=3))


@needs_shared
def test_scores_match_reference(hintsim, photos):
    (_, a), (_, b) = photos[:2]
    grey = measure.gray_of(a)
    assert measure.psnr(a, grey) == pytest.approx(hintsim.psnr(a, grey), rel=1e-12)
    assert measure.psnr(a, b) == pytest.approx(hintsim.psnr(a, b), rel=1e-12)
    assert measure.psnr(a, a) == pytest.approx(hintsim.psnr(a, a)) and measure.psnr(a, a) > 100
    for rgb in (a, b, grey):
        assert measure.colorfulness(rgb) == pytest.approx(hintsim.colorfulness(rgb), rel=1e-12)
    assert measure.colorfulness(grey) < 1 < measure.colorfulness(a)


def test_eval_dir_from_environment_and_original_size(tmp_path, monkeypatch):
    (tmp_path / "set").mkdir()
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(tmp_path / "set" / "b.png")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "set" / "a.png")
    monkeypatch.setenv("TINCT_EVAL_DIR", str(tmp_path))
    got = list(measure.eval_images(size=None))
    assert [name for name, _ in got] == ["set/a", "set/b"]
    assert got[1][1].shape == (30, 40, 3) and (got[1][1] == 200).all()
    assert next(measure.eval_images(size=16))[1].shape == (16, 16, 3)


def test_missing_eval_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="TINCT_EVAL_DIR"):
        next(measure.eval_images(tmp_path / "nowhere"))
