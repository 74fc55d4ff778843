"""Colour from a reference photo and from a palette (tinct.engines.reference, issue 18): the transfer
finds the right colours, strokes win, swatches restrict, a palette moves the learned engine's hues,
bad input is refused clearly, and the reference travels through a real tinctd."""
import numpy as np
import pytest
import torch

import tinct
from tinct.color import lab
from tinct.engines import reference as transfer
from tinct.training import measure


def ab_of(rgb: np.ndarray) -> np.ndarray:
    """Lab a,b (H, W, 2) of an 8-bit RGB image."""
    t = torch.tensor(rgb[..., :3].astype(np.float64) / 255).permute(2, 0, 1)
    return lab.srgb_to_lab(t)[1:].permute(1, 2, 0).numpy()


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """Grey 0..1 of the same mean lightness on both halves: smooth on the left, busy on the right."""
    rng = np.random.default_rng(seed)
    g = np.full((h, w), 0.5)
    g[:, w // 2:] += rng.choice([-0.2, 0.2], size=(h, w - w // 2))
    return g


def coloured(grey: np.ndarray, left: tuple, right: tuple) -> np.ndarray:
    """RGB u8 with `grey`'s lightness pattern, tinted `left` on the left half and `right` on the right."""
    h, w = grey.shape
    tint = np.empty((h, w, 3))
    tint[:, :w // 2], tint[:, w // 2:] = left, right
    return np.clip(grey[..., None] * tint / 0.5, 0, 255).astype(np.uint8)


def mirrored(rgb: np.ndarray) -> np.ndarray:
    """The issue's 'another view of the same scene': mirrored, and 20 % of its width cut off one side."""
    m = rgb[:, ::-1]
    return np.ascontiguousarray(m[:, int(0.2 * m.shape[1]):])


@pytest.fixture(scope="module")
def eval_photos():
    return [rgb for _, (_, rgb) in zip(range(3), measure.eval_images(size=96))]


@pytest.mark.parametrize("engine", ["optimization", "learned"])
def test_texture_decides_the_colour_where_lightness_alone_cannot(engine):
    # Both halves have the same mean lightness; only their 5x5 spread tells them apart, as in Welsh et al.
    ref = coloured(textured(60, 90, seed=1), (200, 60, 40), (40, 90, 210))[:, ::-1]  # smooth red, busy blue, swapped
    photo = (textured(48, 64, seed=2) * 255).astype(np.uint8)
    out = tinct.colorize(photo, engine=engine, reference=np.ascontiguousarray(ref))
    ab = ab_of(out)
    smooth, busy = ab[8:40, 4:26].reshape(-1, 2).mean(0), ab[8:40, 38:60].reshape(-1, 2).mean(0)
    assert smooth[0] > 10 and busy[1] < -10, (smooth, busy)   # smooth -> red (a > 0), busy -> blue (b < 0)
    np.testing.assert_allclose(lab.srgb_to_lab(torch.tensor(out / 255.0).permute(2, 0, 1))[0].numpy(),
                               lab.srgb_to_lab(torch.tensor(np.repeat(photo[..., None], 3, 2) / 255.0)
                                               .permute(2, 0, 1))[0].numpy(), atol=0.5)


def test_another_view_of_the_same_scene_beats_grey_by_3_db(eval_photos):
    gains = []
    for rgb in eval_photos:
        grey = measure.gray_of(rgb)
        out = tinct.colorize(grey, reference=mirrored(rgb))
        gains.append(measure.psnr(out, rgb) - measure.psnr(grey, rgb))
    assert np.mean(gains) >= 3.0, gains


@pytest.mark.parametrize("engine", ["optimization", "learned"])
def test_the_users_strokes_win_where_painted(engine):
    ref = coloured(textured(60, 90, seed=1), (200, 60, 40), (200, 60, 40))  # all red
    photo = (textured(48, 64, seed=2) * 255).astype(np.uint8)
    hints = np.zeros((48, 64, 4), np.uint8)
    hints[10:20, 5:20] = (30, 180, 60, 255)  # green, against the red reference
    out = tinct.colorize(photo, hints, engine=engine, reference=ref)
    painted = ab_of(out)[10:20, 5:20].reshape(-1, 2)
    want = ab_of(np.array([[[30, 180, 60]]], np.uint8))[0, 0]
    assert np.abs(painted.mean(0) - want).max() < 12  # the stroke's colour (chroma clipped to the pixel's L)
    assert painted[:, 0].max() < 0  # green everywhere under the stroke, not the reference's red
    assert ab_of(out)[30:45, 40:60, 0].mean() > 10  # the rest takes the reference's red


def from_lab(L: float, a: float, b: float, shape: tuple) -> np.ndarray:
    """An 8-bit RGB image of one Lab colour."""
    rgb = lab.lab_to_srgb(torch.tensor([L, a, b], dtype=torch.float64)[:, None, None])[:, 0, 0].numpy()
    return np.broadcast_to((rgb * 255 + 0.5).astype(np.uint8), shape + (3,)).copy()


def test_swatches_restrict_where_colour_comes_from():
    ref = np.concatenate([from_lab(50, 50, 30, (40, 40)), from_lab(50, 10, -50, (40, 40))], 1)  # red | blue, same L
    photo = (textured(48, 64, seed=3) * 255).astype(np.uint8)
    free = ab_of(tinct.colorize(photo, reference=ref)).reshape(-1, 2)
    for colour in ((50, 30), (10, -50)):  # unrestricted: red and blue match equally, neither wins
        assert np.hypot(*(free.mean(0) - colour)) > 20
    red_only = ab_of(tinct.colorize(photo, reference=ref, swatches=[((0, 0, 40, 40), (0, 0, 64, 48))]))
    blue_only = ab_of(tinct.colorize(photo, reference=ref, swatches=[((40, 0, 80, 40), (0, 0, 32, 48))]))
    assert red_only[..., 0].min() > 10  # every pixel red: only the red rectangle was offered
    assert blue_only[..., 1].max() < -10  # blue inside the swatch and, from it, outside too
    with pytest.raises(ValueError, match="inside the 80x40 reference"):
        tinct.colorize(photo, reference=ref, swatches=[((0, 0, 90, 40), (0, 0, 64, 48))])
    with pytest.raises(ValueError, match="give a reference"):
        tinct.colorize(photo, swatches=[((0, 0, 40, 40), (0, 0, 64, 48))])
    with pytest.raises(ValueError, match="pair of rectangles"):
        tinct.colorize(photo, reference=ref, swatches=[(1, 2, 3)])


def hue_share(rgb: np.ndarray, centre_deg: float, width_deg: float = 45.0) -> float:
    """Share of the image's chroma whose hue lies within width_deg of centre_deg."""
    ab = ab_of(rgb).reshape(-1, 2)
    chroma = np.hypot(ab[:, 0], ab[:, 1])
    hue = np.degrees(np.arctan2(ab[:, 1], ab[:, 0]))
    near = np.abs((hue - centre_deg + 180) % 360 - 180) <= width_deg
    return float(chroma[near].sum() / max(chroma.sum(), 1e-9))


def test_a_palette_moves_the_learned_engines_hues(eval_photos):
    blue = float(np.degrees(np.arctan2(*ab_of(np.array([[[40, 90, 230]]], np.uint8))[0, 0][::-1])))
    shifts = []
    for rgb in eval_photos:
        grey = measure.gray_of(rgb)
        plain = tinct.colorize(grey, engine="learned")
        steered = tinct.colorize(grey, engine="learned", palette=[(40, 90, 230)])
        shifts.append(hue_share(steered, blue) - hue_share(plain, blue))
    assert min(shifts) >= 0 and np.mean(shifts) > 0.3, shifts  # never away from blue, on the whole towards it
    with pytest.raises(ValueError, match="engine='learned'"):
        tinct.colorize(grey, palette=[(40, 90, 230)])
    with pytest.raises(ValueError, match="0..255"):
        tinct.colorize(grey, engine="learned", palette=[(400, 0, 0)])
    with pytest.raises(ValueError, match="palette is 1 to"):
        tinct.colorize(grey, engine="learned", palette=[])


def test_an_unrelated_reference_brings_its_own_dominant_hue(eval_photos):
    ref = coloured(textured(80, 80, seed=5), (40, 150, 60), (30, 120, 70))  # all green
    green = float(np.degrees(np.arctan2(*ab_of(ref).reshape(-1, 2).mean(0)[::-1])))
    for rgb in eval_photos:
        out = tinct.colorize(measure.gray_of(rgb), engine="learned", reference=ref)
        assert hue_share(out, green) > 0.5


def test_bad_references_are_refused_clearly():
    photo = (textured(24, 32, seed=0) * 255).astype(np.uint8)
    grey = np.repeat(photo[..., None], 3, 2)
    with pytest.raises(ValueError, match="grey"):
        tinct.colorize(photo, reference=grey)                       # RGB, but without colour
    with pytest.raises(ValueError, match="grey image has no colour"):
        tinct.colorize(photo, reference=photo)                      # a grey array
    with pytest.raises(ValueError, match="RGB or RGBA"):
        tinct.colorize(photo, reference=np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="dtype int32"):
        tinct.colorize(photo, reference=np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="NaN"):
        tinct.colorize(photo, reference=np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="transparent"):
        tinct.colorize(photo, reference=np.zeros((4, 4, 4), np.uint8))


def test_a_one_pixel_reference_is_a_tint():
    photo = (textured(24, 32, seed=0) * 255).astype(np.uint8)
    out = tinct.colorize(photo, reference=np.array([[[200, 60, 40]]], np.uint8))
    ab = ab_of(out).reshape(-1, 2)
    assert (ab[:, 0] > 5).mean() > 0.9  # red throughout


def test_rgba_reference_samples_only_opaque_pixels():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = (40, 90, 210)
    rgba[:, 20:, :3] = (200, 60, 40)
    rgba[:, 20:, 3] = 255  # only the red half is opaque
    photo = (textured(24, 32, seed=0) * 255).astype(np.uint8)
    assert ab_of(tinct.colorize(photo, reference=rgba))[..., 0].min() > 5


def test_guided_upsampling_follows_the_full_size_edge(monkeypatch):
    monkeypatch.setattr(transfer, "SOLVE_SIDE", 32)
    L = torch.full((1, 64, 96), 30.0)
    L[:, :, 49:] = 80.0  # an edge that falls inside a proxy pixel
    ab = torch.zeros((2, 32, 48))
    ab[0, :, 25:] = 50.0
    weight = torch.full((1, 32, 48), 1.0)
    out = transfer.solve(L, torch.zeros((2, 64, 96)), torch.zeros((1, 64, 96)), ab, weight)
    assert out.shape == (2, 64, 96)
    assert float(out[0, :, :47].abs().max()) < 8 and float(out[0, :, 50:].min()) > 42


# -- over the wire: a real tinctd ----------------------------------------------------------------

WAYS = {"memfd": True, "files": "files", "frames": False}  # transport -> Client(shared_memory=...)


def wire_reference(ref: np.ndarray) -> dict:
    return {"reference": ref.tobytes(), "reference_width": ref.shape[1], "reference_height": ref.shape[0],
            "reference_layout": "RGBA" if ref.shape[2] == 4 else "RGB", "reference_sample": "u8"}


@pytest.mark.parametrize("transport", list(WAYS))
def test_the_reference_travels_with_the_request(daemon, transport):
    ref = np.ascontiguousarray(coloured(textured(60, 90, seed=1), (200, 60, 40), (40, 90, 210))[:, ::-1])
    photo = (textured(48, 64, seed=2) * 255).astype(np.uint8)
    swatches = [[0, 0, 45, 60, 0, 0, 64, 48]]  # the busy blue half of the reference only
    with daemon.client(shared_memory=WAYS[transport], timeout=60) as c:
        info = c.hello()
        assert "reference" in info["features"]
        if transport != "frames" and not info.get("shm_dir"):
            pytest.skip("tinctd has no shared-memory folder on this system (no /dev/shm or XDG_RUNTIME_DIR)")
        if transport == "memfd" and not info.get("memfd"):
            pytest.skip("no memfd buffers on this system (not Linux, or no /proc)")
        r = c.colorize(width=64, height=48, layout="GRAY", sample="u8", pixels=photo.tobytes(),
                       guidance=wire_reference(ref))
        assert c.transport == transport  # the reference went the way the layer did
        restricted = c.colorize(width=64, height=48, layout="GRAY", sample="u8", pixels=photo.tobytes(),
                                guidance={**wire_reference(ref), "swatches": swatches})
    out = np.frombuffer(r["pixels"], np.uint8).reshape(48, 64, 3)
    np.testing.assert_array_equal(out, tinct.colorize(photo, reference=ref))  # the same as in-process
    ab = ab_of(out)
    assert ab[8:40, 4:26, 0].mean() > 10 and ab[8:40, 38:60, 1].mean() < -10  # smooth red, busy blue
    assert ab_of(np.frombuffer(restricted["pixels"], np.uint8).reshape(48, 64, 3))[..., 1].max() < 0  # blue only


def test_bad_guidance_over_the_wire_gets_clear_errors(tinctd, tmp_path):
    import tinct_client

    d = tinctd(tmp_path, "--max-megapixels", "0.004")
    photo = (textured(48, 64, seed=2) * 255).astype(np.uint8)
    good = coloured(textured(30, 40, seed=1), (200, 60, 40), (40, 90, 210))
    cases = [
        ("too_large", "megapixels", wire_reference(np.zeros((80, 60, 3), np.uint8))),
        ("bad_request", "grey", {**wire_reference(good), "reference_layout": "GRAY",
                                 "reference": good[..., 0].tobytes()}),
        ("bad_request", "grey", wire_reference(np.repeat(good[..., :1], 3, 2))),     # RGB without colour
        ("unsupported", "layout", {**wire_reference(good), "reference_layout": "CMYK"}),
        ("bad_request", "bytes", {**wire_reference(good), "reference": good.tobytes()[:-1]}),
        ("bad_request", "swatches", {**wire_reference(good), "swatches": [[0, 0, 1]]}),
        ("bad_request", "inside", {**wire_reference(good), "swatches": [[0, 0, 99, 30, 0, 0, 8, 8]]}),
        ("bad_request", "send the reference", {"swatches": [[0, 0, 9, 9, 0, 0, 8, 8]]}),
        ("bad_request", "palette", {"palette": [[300, 0, 0]]}),
        ("bad_request", "engine='learned'", {"palette": [[30, 90, 200]]}),
    ]
    with d.client(timeout=60) as c:
        for code, words, guidance in cases:
            with pytest.raises(tinct_client.TinctError) as err:
                c.colorize(width=64, height=48, layout="GRAY", sample="u8", pixels=photo.tobytes(), guidance=guidance)
            assert err.value.code == code and words in str(err.value), (code, words, err.value.code, str(err.value))
        r = c.colorize(width=64, height=48, layout="GRAY", sample="u8", pixels=photo.tobytes(),
                       guidance=wire_reference(good))  # and it still works
        assert len(r["pixels"]) == 64 * 48 * 3


# -- the command line ----------------------------------------------------------------------------

def test_the_cli_takes_a_reference_a_palette_and_ref_files_beside_photos(tmp_path, capsys):
    from tinct.color import imagefile
    from tinct.tools import cli

    ref = coloured(textured(60, 90, seed=1), (200, 60, 40), (200, 60, 40))  # red
    photo = (textured(48, 64, seed=2) * 255).astype(np.uint8)
    imagefile.write(tmp_path / "a.png", photo)
    imagefile.write(tmp_path / "red.png", ref)
    assert cli.main(["colorize", str(tmp_path / "a.png"), "--reference", str(tmp_path / "red.png"),
                     "-o", str(tmp_path / "one.png")]) == 0
    assert ab_of(imagefile.read(tmp_path / "one.png"))[..., 0].mean() > 10
    folder = tmp_path / "folder"
    folder.mkdir()
    imagefile.write(folder / "b.png", photo)
    imagefile.write(folder / "b.ref.jpg", np.ascontiguousarray(ref[..., [2, 1, 0]]))  # blue, beside b
    imagefile.write(folder / "c.png", photo)                                          # no reference
    assert cli.main(["colorize", str(folder), "-o", str(tmp_path / "out")]) == 0
    assert ab_of(imagefile.read(tmp_path / "out" / "b.png"))[..., 1].mean() < -10
    assert np.abs(ab_of(imagefile.read(tmp_path / "out" / "c.png"))).max() < 1  # grey: no strokes, no reference
    assert not (tmp_path / "out" / "b.ref.jpg").exists()  # the reference is not a photo to colorize
    assert cli.main(["colorize", str(tmp_path / "a.png"), "--engine", "learned", "--palette", "1e90ff", "#2e8b57",
                     "-o", str(tmp_path / "pal.png")]) == 0
    with pytest.raises(SystemExit):
        cli.main(["colorize", str(tmp_path / "a.png"), "--palette", "blue"])
    assert "not a colour as RRGGBB" in capsys.readouterr().err
