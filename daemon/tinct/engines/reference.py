"""Colour from a reference photo: Welsh, Ashikhmin & Mueller (2002), made edge-coherent as Irony,
Cohen-Or & Lischinski (2005) do.

Welsh et al. colour each grey pixel with the colour of the reference pixel whose lightness and
neighbourhood statistics (the standard deviation in a 5x5 window) match it best, after remapping
the reference's lightness to the photo's mean and spread.  Pixel-by-pixel matching is noisy and
ignores edges, so, as Irony et al., the matches only guide an edge-aware solve: each pixel's
matched colour is a soft prior weighted by how sure the match is, the surest matches pull
harder (soft strokes), and the Levin solve spreads them along the photo's own lightness edges.
The user's strokes win where they are painted.

Matching is soft: a pixel's colour is the mean over the reference samples weighted by feature
similarity, and its confidence falls with the spread of those samples' colours, so a lightness
that means red in one place of the reference and blue in another pulls little either way.

Speed: statistics are taken at MATCH_SIDE, the solve runs at most SOLVE_SIDE on the long side, and
larger photos get the solved colour by fast guided upsampling (He & Sun 2015) on their own
lightness, so a 12 MP photo costs little more than its colour conversion.

Swatches (Welsh §3.2) are pairs of rectangles: photo pixels inside a photo rectangle match only
the samples of its reference rectangle, and pixels outside every swatch match the samples of all
the swatches, so colours come only from where the user pointed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tinct.color import hints as hintlayer
from tinct.color import lab, pixels
from tinct.engines.optimization import levin

MATCH_SIDE = 256       # long side at which neighbourhood statistics are matched
SOLVE_SIDE = 1024      # long side of the edge-aware solve; larger photos are upsampled guided by their L
GRID = 40              # jittered sampling: one reference pixel from each cell of a GRID x GRID grid
WINDOW = 5             # Welsh et al.'s neighbourhood for the standard deviation
BANDWIDTH = 4.0        # feature distance (L units) at which a sample's vote falls to exp(-1/2)
COLOUR_SPREAD = 12.0   # ab spread of a pixel's matches at which its confidence falls to exp(-1/2)
PRIOR_WEIGHT = 0.05    # data term of a fully confident match against the smoothness term
STROKE_FRACTION = 0.02  # the surest matches that become soft strokes ...
STROKE_WEIGHT = 1.0    # ... pulling this much more (kappa) than the prior
MIN_CHROMA = 3.0       # a reference whose 99th-percentile chroma is below this has no colour to take
NET_WEIGHT = 0.01       # the learned engine's colours, where matches are unsure
MAX_PALETTE = 256
TABLE = (96, 48)       # lookup: grid steps over the photo's lightness and spread ranges
SOLVER_OPTIONS = ("quality", "edge_sensitivity", "tol", "max_iter", "callback")
GUIDED_RADIUS, GUIDED_EPS = 2, 1e-3  # fast guided upsampling window (proxy pixels) and regulariser (L/100)^2


@dataclass(frozen=True)
class Swatch:
    """Reference rectangle -> photo rectangle, each (x0, y0, x1, y1) in its own image's pixels, x1/y1 exclusive."""
    reference: tuple[int, int, int, int]
    photo: tuple[int, int, int, int]


@dataclass
class Reference:
    """A decoded reference: Lab (3, h, w) at most MATCH_SIDE, which pixels may be sampled, its size."""
    lab: torch.Tensor
    usable: torch.Tensor  # (h, w) bool: opaque pixels
    size: tuple[int, int]  # (height, width) as given


def _proxy_size(h: int, w: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def load_reference(image: np.ndarray, device: torch.device | str | None = None) -> Reference:
    """Validate and decode a reference photo (numpy RGB or RGBA, uint8/uint16/float 0..1, any size).

    Grey images are refused: there is no colour in them to take.  Transparent pixels are not sampled.
    """
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) != 3 or shape[2] not in (3, 4):
        raise ValueError(f"the reference must be a colour photo, an RGB or RGBA array (H, W, 3|4); got shape {shape}"
                         + ("; a grey image has no colour to transfer" if shape is not None and
                            (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 2))) else ""))
    decoded = pixels.decode(image, device)
    h, w = decoded.rgb.shape[1:]
    alpha = (torch.ones((1, h, w), device=decoded.rgb.device) if decoded.alpha is None
             else pixels.to_unit(decoded.alpha, decoded.rgb.device)[None])
    size = _proxy_size(h, w, MATCH_SIDE)
    if alpha.amin() < 1:  # premultiplied area averaging, so transparent pixels do not tint their neighbours
        cover = F.adaptive_avg_pool2d(alpha[None], size)[0]
        rgb = F.adaptive_avg_pool2d((decoded.rgb * alpha)[None], size)[0] / cover.clamp_min(1e-6)
    else:
        cover = torch.ones((1,) + size, device=alpha.device)
        rgb = F.adaptive_avg_pool2d(decoded.rgb[None], size)[0] if size != (h, w) else decoded.rgb
    ref_lab = lab.srgb_to_lab(rgb.clamp(0, 1))
    usable = cover[0] > 0.5
    if not bool(usable.any()):
        raise ValueError("the reference is fully transparent: there is no colour in it to transfer")
    chroma = ref_lab[1:].norm(dim=0)[usable]
    if float(torch.quantile(chroma.float(), 0.99)) < MIN_CHROMA:
        raise ValueError("the reference is grey (no colour to transfer); choose a colour photo as the reference")
    return Reference(ref_lab, usable, (h, w))


def statistics(L: torch.Tensor) -> torch.Tensor:
    """Welsh et al.'s per-pixel features (2, h, w): lightness and its standard deviation in a 5x5 window."""
    x = L.reshape(1, 1, *L.shape[-2:])
    pad = WINDOW // 2
    if min(x.shape[-2:]) > pad:
        x = F.pad(x, (pad,) * 4, mode="reflect")
    else:
        x = F.pad(x, (pad,) * 4, mode="replicate")
    mean = F.avg_pool2d(x, WINDOW, stride=1)
    var = F.avg_pool2d(x * x, WINDOW, stride=1) - mean * mean
    return torch.cat([L.reshape(1, *L.shape[-2:]), var.clamp_min(0).sqrt()[0]], 0)


def remap(ref_L: torch.Tensor, usable: torch.Tensor, photo_L: torch.Tensor) -> torch.Tensor:
    """Luminance remapping: the reference's lightness shifted and scaled to the photo's mean and spread."""
    values = ref_L[usable]
    spread = values.std() if values.numel() > 1 else values.new_tensor(0.0)
    scale = photo_L.std() / spread if float(spread) > 1e-3 else photo_L.new_tensor(1.0)
    return (ref_L - values.mean()) * scale + photo_L.mean()


def jittered(mask: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Flat indices of about `count` pixels of `mask` (h, w), one at a random spot of each cell of a grid."""
    h, w = mask.shape
    cells = max(1, int(math.isqrt(count)))
    gy = torch.linspace(0, h, min(cells, h) + 1)
    gx = torch.linspace(0, w, min(cells, w) + 1)
    y0, x0 = torch.meshgrid(gy[:-1], gx[:-1], indexing="ij")
    y1, x1 = torch.meshgrid(gy[1:], gx[1:], indexing="ij")
    ys = (y0 + torch.rand(y0.shape, generator=generator) * (y1 - y0)).long().clamp(0, h - 1)
    xs = (x0 + torch.rand(x0.shape, generator=generator) * (x1 - x0)).long().clamp(0, w - 1)
    flat = (ys * w + xs).flatten().unique().to(mask.device)
    return flat[mask.flatten()[flat]]


def match(features: torch.Tensor, sample_features: torch.Tensor, sample_ab: torch.Tensor,
          chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft match of every pixel's features (F, N) against the samples' (F, S): (ab (2, N), confidence (N,)).

    A sample's vote is a Gaussian of the feature distance; the colour is the votes' mean and the
    confidence falls with the votes' colour spread and with the distance to the nearest sample.
    """
    ab_out, conf_out = [], []
    s2 = (sample_features * sample_features).sum(0)
    for start in range(0, features.shape[1], chunk):
        f = features[:, start:start + chunk]
        d2 = ((f * f).sum(0)[:, None] + s2[None, :] - 2 * f.T @ sample_features).clamp_min(0)
        nearest = d2.amin(1)
        votes = torch.softmax(-(d2 - nearest[:, None]) / (2 * BANDWIDTH ** 2), 1)  # (n, S)
        ab = votes @ sample_ab.T                                                  # (n, 2)
        spread = (votes @ (sample_ab * sample_ab).sum(0)) - (ab * ab).sum(1)
        conf = torch.exp(-spread.clamp_min(0) / (2 * COLOUR_SPREAD ** 2) - nearest / (2 * BANDWIDTH ** 2))
        ab_out.append(ab.T)
        conf_out.append(conf)
    return torch.cat(ab_out, 1), torch.cat(conf_out)


def lookup(features: torch.Tensor, sample_features: torch.Tensor, sample_ab: torch.Tensor,
           steps: tuple[int, int] = TABLE) -> tuple[torch.Tensor, torch.Tensor]:
    """`match` for (lightness, spread) features (2, N) through a table: matched once on a grid over
    the features' range, read back by bilinear interpolation, so the cost no longer grows with the
    photo's pixels (the grid is finer than BANDWIDTH, over which the match changes)."""
    lo, hi = features.amin(1), features.amax(1)
    axes = [torch.linspace(float(lo[i]), float(hi[i]) + 1e-3, steps[i], device=features.device) for i in range(2)]
    gl, gs = torch.meshgrid(*axes, indexing="ij")
    ab, conf = match(torch.stack([gl.flatten(), gs.flatten()]), sample_features, sample_ab)
    table = torch.cat([ab, conf[None]]).reshape(3, *steps)                 # (3, L steps, spread steps)
    pos = (features - lo[:, None]) / (hi - lo + 1e-3)[:, None] * 2 - 1      # -1..1 along each axis
    grid = torch.stack([pos[1], pos[0]], -1)[None, None]                    # x: spread (width), y: lightness
    out = F.grid_sample(table[None], grid, mode="bilinear", align_corners=True)[0, :, 0]
    return out[:2], out[2]


def _rect_mask(rect: tuple[int, int, int, int], full: tuple[int, int], size: tuple[int, int],
               what: str) -> torch.Tensor:
    """A rectangle given in an image's own pixels as a mask at working size `size`."""
    x0, y0, x1, y1 = rect
    fh, fw = full
    if not (0 <= x0 < x1 <= fw and 0 <= y0 < y1 <= fh):
        raise ValueError(f"the swatch's {what} rectangle {rect} must lie inside the {fw}x{fh} {what} "
                         "as (x0, y0, x1, y1) with x0 < x1 and y0 < y1")
    h, w = size
    mask = torch.zeros(size, dtype=torch.bool)
    ya, yb = int(y0 * h / fh), max(int(y0 * h / fh) + 1, math.ceil(y1 * h / fh))
    xa, xb = int(x0 * w / fw), max(int(x0 * w / fw) + 1, math.ceil(x1 * w / fw))
    mask[ya:yb, xa:xb] = True
    return mask


def guide(L: torch.Tensor, reference: Reference, swatches: list[Swatch] | tuple[Swatch, ...] = (),
          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The matched colour (2, h, w) and its confidence (1, h, w) at MATCH_SIDE for photo lightness L (1, H, W)."""
    full = (int(L.shape[-2]), int(L.shape[-1]))
    size = _proxy_size(*full, MATCH_SIDE)
    small = F.adaptive_avg_pool2d(L[None], size)[0] if size != full else L
    feats = statistics(small).flatten(1)
    ref_L = remap(reference.lab[0], reference.usable, small)
    ref_feats = statistics(ref_L).flatten(1)
    ref_ab = reference.lab[1:].flatten(1)
    gen = torch.Generator().manual_seed(seed)
    if not swatches:
        idx = jittered(reference.usable, GRID * GRID, gen)
        ab, conf = lookup(feats, ref_feats[:, idx], ref_ab[:, idx])
        return ab.reshape(2, *size), conf.reshape(1, *size)
    ab = torch.zeros((2, size[0] * size[1]), device=L.device)
    conf = torch.zeros(size[0] * size[1], device=L.device)
    inside = torch.zeros(size[0] * size[1], dtype=torch.bool, device=L.device)
    pooled = []
    per_swatch = max(64, GRID * GRID // len(swatches))
    reference_size = (int(reference.usable.shape[0]), int(reference.usable.shape[1]))
    for swatch in swatches:
        ref_mask = _rect_mask(swatch.reference, reference.size, reference_size, "reference")
        idx = jittered(ref_mask.to(L.device) & reference.usable, per_swatch, gen)
        if idx.numel() == 0:
            raise ValueError(f"the swatch's reference rectangle {swatch.reference} is fully transparent")
        pooled.append(idx)
        where = _rect_mask(swatch.photo, full, size, "photo").flatten().to(L.device)
        ab[:, where], conf[where] = lookup(feats[:, where], ref_feats[:, idx], ref_ab[:, idx])
        inside |= where
    if bool((~inside).any()):
        idx = torch.cat(pooled)
        ab[:, ~inside], conf[~inside] = lookup(feats[:, ~inside], ref_feats[:, idx], ref_ab[:, idx])
    return ab.reshape(2, *size), conf.reshape(1, *size)


def data_term(confidence: torch.Tensor) -> torch.Tensor:
    """Per-pixel prior weight from match confidence: the surest STROKE_FRACTION pull as soft strokes."""
    weight = PRIOR_WEIGHT * confidence
    flat = confidence.flatten()
    k = max(1, int(STROKE_FRACTION * flat.numel()))
    cut = flat.topk(k).values[-1]
    return weight + STROKE_WEIGHT * confidence * (confidence >= cut)


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x[None], (r,) * 4, mode="replicate"), 2 * r + 1, stride=1)[0]


def guided_upsample(ab: torch.Tensor, L_small: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Fast guided upsampling (He & Sun 2015): ab as a local linear function of lightness, fitted at the
    solve's size and evaluated on the photo's own L, so colour edges follow the full-size edges."""
    g = L_small / 100.0
    mean_g = _box(g, GUIDED_RADIUS)
    var_g = _box(g * g, GUIDED_RADIUS) - mean_g * mean_g
    mean_p = _box(ab, GUIDED_RADIUS)
    a = (_box(g * ab, GUIDED_RADIUS) - mean_g * mean_p) / (var_g + GUIDED_EPS)
    b = mean_p - a * mean_g
    coeffs = torch.cat([_box(a, GUIDED_RADIUS), _box(b, GUIDED_RADIUS)], 0)
    up = F.interpolate(coeffs[None], size=L.shape[-2:], mode="bilinear", align_corners=False)[0]
    return up[:2] * (L / 100.0) + up[2:]


def solve(L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor, prior_ab: torch.Tensor,
          prior_weight: torch.Tensor, **solver: Any) -> torch.Tensor:
    """The Levin solve with strokes and a prior (any size, brought to L's), at most SOLVE_SIDE, then
    guided upsampling to L's size; the user's strokes are composited exactly where painted.
    `solver`: levin.solve_ab's quality, edge_sensitivity, tol, max_iter, callback."""
    full = (int(L.shape[-2]), int(L.shape[-1]))
    size = _proxy_size(*full, SOLVE_SIDE)
    if size == full:
        Ls, hab, hw = L, hint_ab, hint_weight
    else:
        Ls = F.adaptive_avg_pool2d(L[None], size)[0]
        hab, hw = hintlayer.downsample(hint_ab, hint_weight, size)
    if tuple(prior_ab.shape[-2:]) != size:
        prior_ab = F.interpolate(prior_ab[None], size=size, mode="bilinear", align_corners=False)[0]
        prior_weight = F.interpolate(prior_weight[None], size=size, mode="bilinear", align_corners=False)[0]
    prior_weight = prior_weight * (hw <= 0)  # the user's strokes win where painted
    ab, _ = levin.solve_ab(Ls, hab, hw, prior_ab=prior_ab, prior_weight=prior_weight, **solver)
    if size == full:
        return ab
    ab = guided_upsample(ab, Ls, L)
    return torch.where(hint_weight > 0, hint_weight * hint_ab + (1 - hint_weight) * ab, ab)


def palette_of(colours: Sequence | np.ndarray, device: torch.device | str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB colours (K, 3) as 0..255 numbers -> (ab (K, 2), weight (K,)), the learned engine's palette."""
    rgb = torch.as_tensor(np.asarray(colours, dtype=np.float64), device=device)
    if rgb.ndim != 2 or rgb.shape[1] != 3 or not 1 <= rgb.shape[0] <= MAX_PALETTE:
        raise ValueError(f"a palette is 1 to {MAX_PALETTE} sRGB colours, each (r, g, b); got shape {tuple(rgb.shape)}")
    if not bool(((rgb >= 0) & (rgb <= 255)).all()):
        raise ValueError("palette colours are (r, g, b) with each channel 0..255")
    ab = lab.srgb_to_lab((rgb / 255).T[:, :, None].float())[1:, :, 0].T
    return ab, torch.ones(len(ab), device=device)


def histogram_of(reference: Reference, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A jittered sample of the reference's colours as a palette: its colour histogram, kernel-smoothed."""
    idx = jittered(reference.usable, GRID * GRID, generator)
    return reference.lab[1:].flatten(1)[:, idx].T.contiguous(), torch.ones(idx.numel(), device=idx.device)


def predict_ab(engine: Any, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor, reference: Reference,
               swatches: list[Swatch] | tuple[Swatch, ...] = (),
               palette: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0, **options: Any) -> torch.Tensor:
    """ab (2, H, W) for lightness L from a reference photo with either engine.

    optimization: the matched colours are the solve's only prior.  learned: the network's automatic
    colours, steered towards `palette` (default: the reference's histogram), are a weak prior
    (NET_WEIGHT) that fills in where the matches are unsure."""
    unknown = set(options) - engine.OPTIONS
    if unknown:
        raise ValueError(f"unknown option(s) for the {engine.name} engine: {', '.join(sorted(unknown))}")
    ab, confidence = guide(L, reference, swatches, seed)
    weight = data_term(confidence)
    if engine.name == "learned":
        steer = palette if palette is not None else histogram_of(reference, torch.Generator().manual_seed(seed))
        net_ab, _ = engine.network_prior(L, hint_ab, hint_weight, options.get("vibrancy"),
                                         options.get("max_side", 512), steer)
        net_ab = F.interpolate(net_ab[None], size=ab.shape[-2:], mode="bilinear", align_corners=False)[0]
        ab = (weight * ab + NET_WEIGHT * net_ab) / (weight + NET_WEIGHT)
        weight = weight + NET_WEIGHT
    elif palette is not None:
        raise ValueError("a palette steers the learned engine's colours; use engine='learned'")
    solver = {k: v for k, v in options.items() if k in SOLVER_OPTIONS}
    return solve(L, hint_ab, hint_weight, ab, weight, **solver)


def swatch_of(pair: Swatch | Sequence) -> Swatch:
    """A Swatch from a Swatch or a pair of (x0, y0, x1, y1) rectangles (reference, photo)."""
    if isinstance(pair, Swatch):
        return pair
    try:
        ref, photo = (tuple(int(v) for v in rect) for rect in pair)
    except (TypeError, ValueError):
        raise ValueError(f"a swatch is a pair of rectangles ((x0, y0, x1, y1) in the reference, (x0, y0, x1, y1) "
                         f"in the photo), not {pair!r}"[:300]) from None
    if len(ref) != 4 or len(photo) != 4:
        raise ValueError("a swatch's rectangles are each (x0, y0, x1, y1)")
    return Swatch(ref, photo)  # pyright: ignore[reportArgumentType]  # lengths checked above
