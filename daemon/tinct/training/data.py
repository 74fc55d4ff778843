"""Training data for the hint network: the shared photo shards, and simulated user hints.

The shards (shared/data/train-*.tar, 160x160 JPEGs) are decoded once into one uint8 array
cached beside the run, so an epoch costs no JPEG decoding.  Hints are simulated the way
ideepcolor trains (a geometric number of small square patches carrying the patch's mean
ab, centres from a centred Gaussian) and, because our users paint, as short strokes
carrying the true colour along a random polyline; a quarter of the samples get no hints
so the automatic case is learned too.

Held out from training: the shards' last VAL_PHOTOS photos (all scenes, as the shards sort) and
a fixed set of OBJECT_PHOTOS object, pet, clothing and people photos (every k-th of those sources
in shard order), issue 17's held-out object set.  Engine settings are chosen on the scenes and on
the object set's validation half (every other one, from the first); its test half is never tuned on.
"""
from __future__ import annotations

import csv
import io
import math
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tinct.color import lab

VAL_PHOTOS = 128     # the shards' last photos, never trained on
OBJECT_PHOTOS = 64   # the held-out object set
OBJECT_SOURCES = ("caltech101", "clothing", "catsdogs", "bsds500", "coco")
NO_HINTS = 0.25      # share of samples without any hint
STROKES = 0.3        # share of hinted samples that get strokes instead of patches
POINT_P = 1 / 8      # geometric parameter for the number of patches (ideepcolor)


def default_data_dir() -> Path:
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def shard_names(data_dir: Path) -> list[str]:
    """The photos' file names in the order `load_shards` stacks them."""
    names = []
    for shard in sorted(Path(data_dir).glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            names += [m.name for m in sorted(tar.getmembers(), key=lambda m: m.name)
                      if m.isfile() and m.name.endswith(".jpg")]
    return names


def object_photos(data_dir: Path, names: list[str] | None = None, part: str | None = None) -> np.ndarray:
    """Indices of the held-out object set: every k-th photo of OBJECT_SOURCES (train_manifest.csv)
    outside the validation slice, OBJECT_PHOTOS of them; none when the shards have no manifest.
    `part` "validation" or "test": its half for choosing settings, or the half never tuned on.
    `names`: the shards' `shard_names`, where the caller has them already."""
    if part not in (None, "validation", "test"):
        raise ValueError(f"part is 'validation' or 'test', not {part!r}")
    manifest = Path(data_dir) / "train_manifest.csv"
    if not manifest.exists():
        return np.zeros(0, dtype=np.int64)
    with open(manifest, newline="") as f:
        source = {row["file"]: row["source"] for row in csv.DictReader(f)}
    names = shard_names(data_dir) if names is None else names
    pool = [i for i, name in enumerate(names[:len(names) - VAL_PHOTOS]) if source.get(name) in OBJECT_SOURCES]
    step = max(1, len(pool) // OBJECT_PHOTOS)
    held = np.array(pool[step // 2::step][:OBJECT_PHOTOS], dtype=np.int64)
    return held if part is None else held[0::2] if part == "validation" else held[1::2]


def training_indices(count: int, data_dir: Path) -> np.ndarray:
    """The photos training may use: all but the validation slice and the held-out object set."""
    keep = np.ones(count, dtype=bool)
    keep[count - min(VAL_PHOTOS, count // 4):] = False
    held = object_photos(data_dir)
    keep[held[held < count]] = False
    return np.flatnonzero(keep)


def load_shards(data_dir: Path, cache: Path) -> np.ndarray:
    """All training photos as (N, 160, 160, 3) uint8, decoded once and cached as .npy."""
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    shards = sorted(Path(data_dir).glob("train-*.tar"))
    if not shards:
        raise ValueError(f"no training shards (train-*.tar) in {data_dir}")
    photos = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(".jpg"):
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file always has its content
                    img = Image.open(io.BytesIO(handle.read())).convert("RGB")
                    photos.append(np.asarray(img))
    array = np.stack(photos)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, array)
    return array


def batch(photos: np.ndarray, index: np.ndarray, crop: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop (with +-10 % scale jitter) and flip of the chosen photos -> Lab (N, 3, crop, crop)."""
    out = []
    for i in index:
        img = torch.from_numpy(np.array(photos[i])).permute(2, 0, 1).float() / 255
        scale = 1.0 + 0.2 * (float(torch.rand(1, generator=gen)) - 0.5)
        side = max(crop, min(img.shape[-1], int(round(crop * scale))))
        y = int(torch.randint(0, img.shape[1] - side + 1, (1,), generator=gen))
        x = int(torch.randint(0, img.shape[2] - side + 1, (1,), generator=gen))
        patch = img[:, y:y + side, x:x + side]
        if side != crop:
            patch = F.interpolate(patch[None], size=(crop, crop), mode="bilinear", align_corners=False)[0]
        if torch.rand(1, generator=gen) < 0.5:
            patch = patch.flip(-1)
        out.append(patch.clamp(0, 1))
    return lab.srgb_to_lab(torch.stack(out))


def simulate_hints(ab: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Hints for a batch of true colours ab (N, 2, H, W): (hint_ab, hint_weight (N, 1, H, W))."""
    n, _, h, w = ab.shape
    hint_ab = torch.zeros_like(ab)
    weight = torch.zeros(n, 1, h, w)
    for i in range(n):
        r = float(torch.rand(1, generator=gen))
        if r < NO_HINTS:
            continue
        if r < NO_HINTS + (1 - NO_HINTS) * STROKES:
            _strokes(ab[i], hint_ab[i], weight[i], gen)
        else:
            _patches(ab[i], hint_ab[i], weight[i], gen)
    return hint_ab, weight


def _patches(ab, hint_ab, weight, gen):
    h, w = ab.shape[-2:]
    count = 1 + int(math.log(max(float(torch.rand(1, generator=gen)), 1e-12)) / math.log(1 - POINT_P))
    for _ in range(count):
        size = int(torch.randint(1, 10, (1,), generator=gen))
        cy, cx = (torch.randn(2, generator=gen) * torch.tensor([h, w]) / 4 + torch.tensor([h, w]) / 2).tolist()
        y = int(min(max(cy - size / 2, 0), h - size))
        x = int(min(max(cx - size / 2, 0), w - size))
        region = (slice(None), slice(y, y + size), slice(x, x + size))
        hint_ab[region] = ab[region].mean((1, 2), keepdim=True)
        weight[region] = 1.0


def _strokes(ab, hint_ab, weight, gen):
    h, w = ab.shape[-2:]
    for _ in range(int(torch.randint(1, 6, (1,), generator=gen))):
        y, x = (torch.rand(2, generator=gen) * torch.tensor([h - 1, w - 1])).tolist()
        radius = int(torch.randint(0, 2, (1,), generator=gen))
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            angle = float(torch.rand(1, generator=gen)) * 2 * math.pi
            length = 5 + float(torch.rand(1, generator=gen)) * 25
            for t in torch.linspace(0, 1, int(length) + 1).tolist():
                py = int(min(max(y + t * length * math.sin(angle), 0), h - 1))
                px = int(min(max(x + t * length * math.cos(angle), 0), w - 1))
                region = (slice(None), slice(max(py - radius, 0), py + radius + 1),
                          slice(max(px - radius, 0), px + radius + 1))
                hint_ab[region] = ab[region]  # the true colour along the stroke
                weight[region] = 1.0
            y, x = py, px
