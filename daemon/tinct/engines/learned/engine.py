"""The learned engine: our hint network, run small, brought to full resolution edge-aware.

The network runs at most `max_side` pixels on the long side (it has seen 96-160 px crops;
more pixels only cost time).  Its colours are then spread back to the photo's own size
by the Levin solver with the network's ab as a soft prior and the user's strokes as hard
constraints, so a 24 MP scan gets colour edges that follow its own lightness edges, not
blurry upsampled ones, and every stroke is honoured exactly.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from tinct.color import hints as hintlayer
from tinct.color import lab
from tinct.engines import ModelNotInstalled
from tinct.engines.optimization import levin, proxy

from . import net, variations

# The shipped weights are package data (pyproject.toml): in a checkout and an editable install they are this
# folder's models/ itself, where `tinct train` exports; a wheel carries the same file in the same place.
assert __package__ is not None  # set for every module of a package
MODEL_PATH = Path(str(resources.files("tinct.models") / "tinct-hint-v1.pt"))
AUTO_TEMPERATURE = 0.38   # Zhang et al. 2016's annealed mean for the automatic (no hints) case
# "vibrancy" 0..1 is what users see (more is bolder); the annealing temperature it sets falls from
# 1 (the distribution's mean: muted, safe) to 0.05 (near its mode: bold).  The default gives 0.38.
DEFAULT_VIBRANCY = (1.0 - AUTO_TEMPERATURE) / 0.95
CERTAIN = 0.08            # top bin probability from which automatic colours are kept in full (validation)
PHOTO_CERTAINTY = 0.5     # exponent of the photo's mean certainty that scales all its automatic colours (validation)
PRIOR_WEIGHT = 1e-5       # pull towards the network's colours where strokes do not reach (validation slice)
AUTO_PRIOR_WEIGHT = 1.0   # with no hints the network is all there is: keep its colours, only align edges
NEUTRAL_CHROMA = 2.0      # a stroke of less Lab chroma than this says "no colour here" (issue 17)
PALETTE_SPREAD = 15.0     # ab distance over which a palette colour lends its weight to the bins around it
PALETTE_STRENGTH = 1.0    # exponent of the palette density multiplying the distribution
PALETTE_FLOOR = 0.05      # relative density every bin keeps, however far from the palette


def temperature(vibrancy: float) -> float:
    """Vibrancy 0..1 -> annealed-mean temperature (Zhang et al. 2016), one mapping for every plugin."""
    if not 0.0 <= vibrancy <= 1.0:
        raise ValueError(f"vibrancy must be between 0 (muted) and 1 (bold), not {vibrancy}")
    return 1.0 - 0.95 * vibrancy


def certainty(logits: torch.Tensor) -> torch.Tensor:
    """How sure the network is of each cell's colour (h, w) 0..1: its top bin probability / CERTAIN, at most 1,
    times the photo's mean of that to the PHOTO_CERTAINTY.  The automatic colours are scaled by it, so an
    unsure region fades towards grey instead of a bold guess, and so does a photo the network is unsure of
    as a whole (a lone object on a plain ground, where a confident sky or lawn is missing)."""
    cell = (torch.softmax(logits, 0).amax(0) / CERTAIN).clamp(max=1.0)
    mean = cell.double().sum(-1).sum() / cell.numel()  # row by row, then the rows: the same at any thread count
    return cell * float(mean) ** PHOTO_CERTAINTY


def model_path() -> Path:
    """$TINCT_MODEL, else the weights the package carries (models/, installed as tinct.models)."""
    return Path(os.environ["TINCT_MODEL"]) if "TINCT_MODEL" in os.environ else MODEL_PATH


def load(path: Path) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    """(network, bins, metadata) from an exported weights file, refusing anything else clearly."""
    if not path.exists():
        raise ModelNotInstalled(f"the learned engine's model is not installed (no file {path}); "
                                "reinstall Tinct (installers/install.sh) or choose the Optimization engine")
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(blob, dict) or blob.get("format") != "tinct-hint":
            raise ValueError("not a Tinct hint-network file")
        model = net.HintNet(len(blob["bins"]), blob["width"], blob.get("shape", "u-net"))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()})
    except ModelNotInstalled:
        raise
    except Exception as exc:
        raise ModelNotInstalled(f"the learned engine's model file {path} is unreadable or corrupt ({exc}); "
                                "reinstall Tinct (installers/install.sh) or choose the Optimization engine") from None
    model = model.eval().to(memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue]  # NHWC: 1.4x on the CPU
    return model, blob["bins"].float(), {k: v for k, v in blob.items() if k not in ("state", "bins")}


def steer(logits: torch.Tensor, bins: torch.Tensor, palette_ab: torch.Tensor, palette_weight: torch.Tensor
          ) -> torch.Tensor:
    """Logits (Q, h, w) reweighted towards a palette, the global-hint idea of Zhang et al. 2017 without
    retraining: each bin's probability times a kernel density of the palette's colours (ab (K, 2),
    weight (K,)), floored so that colours far from the palette stay possible (and grey, always)."""
    d2 = torch.cdist(bins.to(palette_ab.dtype), palette_ab) ** 2                        # (Q, K)
    density = (palette_weight[None, :] * torch.exp(-d2 / (2 * PALETTE_SPREAD ** 2))).sum(1)
    density = density / density.max().clamp_min(1e-12)
    return logits + PALETTE_STRENGTH * torch.log(density + PALETTE_FLOOR).to(logits.dtype)[:, None, None]


def colour_share(L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor,
                 size: tuple[int, int]) -> torch.Tensor | None:
    """How much coloured strokes, rather than neutral ones, own each pixel: (1, h, w) 0..1 at working size.

    A neutral stroke means "no colour here", and the network's prior must not overrule it.  Each stroke's
    colourfulness min(chroma / NEUTRAL_CHROMA, 1) is spread by the same edge-aware propagation that spreads
    the strokes' colours; scaled by it, the prior lets neutral strokes win their region for grey the way
    coloured strokes win theirs.  None when no stroke is neutral (the prior is left as it is)."""
    colour = (hint_ab.norm(dim=0, keepdim=True) / NEUTRAL_CHROMA).clamp(max=1.0)
    if bool((colour[hint_weight > 0] >= 1).all()):
        return None
    if size != tuple(L.shape[-2:]):
        L = F.interpolate(L[None], size=size, mode="area")[0]
        colour, hint_weight = hintlayer.downsample(colour, hint_weight, size)
    if not bool(colour[hint_weight > 0].any()):
        return torch.zeros_like(L)
    share, _ = levin.solve_ab(L, colour, hint_weight, quality="preview")
    return share.clamp(0.0, 1.0)


def refuse(unknown: dict) -> None:
    if unknown:
        raise ValueError(f"unknown option(s) for the learned engine: {', '.join(sorted(unknown))}")


class LearnedEngine:
    name = "learned"
    DEFAULT_QUALITY = "final"
    OPTIONS = {"vibrancy", "quality", "max_side", "prior_weight", "palette", "callback"}

    def __init__(self, path: Path | None = None):
        self.model, self.bins, self.meta = load(path or model_path())
        self.version = f"tinct-hint v{self.meta.get('format_version', 1)}, step {self.meta.get('step', '?')}"

    def network(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor, max_side: int = 512
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Run the net at working size: (ab regression (2,h,w) Lab units, logits (Q,h/4,w/4), (h, w))."""
        h, w = L.shape[-2:]
        scale = min(1.0, max_side / max(h, w))
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        if size != (h, w):
            L = F.interpolate(L[None], size=size, mode="area")[0]
            hint_ab, hint_weight = hintlayer.downsample(hint_ab, hint_weight, size)
        ph, pw = -size[0] % 8, -size[1] % 8  # the U-Net halves three times
        x = net.network_input(L[None], hint_ab[None], hint_weight[None])
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        model = self.model.to(L.device)  # keeps load()'s channels_last
        cuda = L.device.type == "cuda"  # tensor cores: bf16 (on the CPU fp32 is exact and fast enough)
        x = x.contiguous(memory_format=torch.channels_last)
        # oneDNN's 1x1 convolutions round differently with the thread count; PyTorch's own give a photo
        # the same bytes on a laptop, in tinctd and on a cluster node (tests/test_learned.py, test_cluster.py).
        # The depthwise ones stay on oneDNN (net.Depthwise).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration")  # flags() speaks of Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), \
                    torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                pred, logits = model(x)
        ab = lab.denormalize_ab(pred[0, :, :size[0], :size[1]].float())
        return ab, logits[0].float().contiguous(), size

    def network_prior(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor,
                      vibrancy: float | None = None, max_side: int = 512,
                      palette: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, float]:
        """The network's colours (2, h, w) at working size and the solve's default weight on them.

        `vibrancy` (0..1) decodes the colour distribution at that boldness instead of taking the
        regression head; the automatic case and a `palette` always decode (by default at
        DEFAULT_VIBRANCY).  `palette` is (ab (K, 2), weight (K,)) colours to steer towards (steer).
        Without strokes they fade where the network is unsure (certainty); where neutral strokes own the
        picture, to grey (colour_share)."""
        priors, weight = self.network_priors(L, hint_ab, hint_weight, vibrancy, max_side, palette)
        return priors[0], weight

    def network_priors(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor,
                       vibrancy: float | None = None, max_side: int = 512,
                       palette: tuple[torch.Tensor, torch.Tensor] | None = None, count: int = 1,
                       seed: int = variations.DEFAULT_SEED) -> tuple[list[torch.Tensor], float]:
        """network_prior's colours, then count - 1 variations of them (tinct.engines.learned.variations),
        each decoded from the same network run with its own perturbation of the logits: the
        distribution is always decoded for them, at `vibrancy` or DEFAULT_VIBRANCY, faded and greyed
        exactly like the first."""
        ab, logits, size = self.network(L, hint_ab, hint_weight, max_side)
        automatic = not bool((hint_weight > 0).any())
        decode = vibrancy is not None or automatic or palette is not None
        temp = temperature(float(DEFAULT_VIBRANCY if vibrancy is None else vibrancy))
        bins = self.bins.to(L.device)
        if palette is not None:
            logits = steer(logits, bins, *palette)
        fade = certainty(logits) if automatic else None
        share = None if automatic else colour_share(L, hint_ab, hint_weight, size)

        def prior(perturbation: torch.Tensor | None) -> torch.Tensor:
            out = ab
            if decode or perturbation is not None:
                dist = net.decode((logits if perturbation is None else logits + perturbation)[None], bins, temp)
                if fade is not None:
                    dist = dist * fade
                # the logits cover the padded input at 1/4 scale: upsample 4x, then drop the padding
                out = F.interpolate(dist, scale_factor=4, mode="bilinear", align_corners=False)[0]
                out = out[..., :size[0], :size[1]]
            return out if share is None else out * share

        priors = [prior(None)]
        if count > 1:
            gen = variations.generator(seed, L)
            priors += [prior(variations.noise(logits.shape, gen).to(logits.device)) for _ in range(count - 1)]
        return priors, AUTO_PRIOR_WEIGHT if automatic else PRIOR_WEIGHT

    def predict_ab(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor,
                   vibrancy: float | None = None, quality: str = DEFAULT_QUALITY, max_side: int = 512,
                   prior_weight: float | torch.Tensor | None = None,
                   palette: tuple[torch.Tensor, torch.Tensor] | None = None,
                   callback: Callable[[int, float], None] | None = None, **unknown: object) -> torch.Tensor:
        """ab (2,H,W): the network's colours (network_prior) spread to full size by the Levin solve;
        `prior_weight` is how strongly the solve keeps them against the strokes' spread (default:
        PRIOR_WEIGHT with strokes, AUTO_PRIOR_WEIGHT without)."""
        refuse(unknown)
        return next(self.predict_variations(L, hint_ab, hint_weight, 1, vibrancy=vibrancy, quality=quality,
                                            max_side=max_side, prior_weight=prior_weight, palette=palette,
                                            callback=callback))

    def predict_variations(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor, count: int,
                           seed: int = variations.DEFAULT_SEED, vibrancy: float | None = None,
                           quality: str = DEFAULT_QUALITY, max_side: int = 512,
                           prior_weight: float | torch.Tensor | None = None,
                           palette: tuple[torch.Tensor, torch.Tensor] | None = None,
                           callback: Callable[[int, float], None] | None = None,
                           **unknown: object) -> Iterator[torch.Tensor]:
        """`count` colorizations ab (2,H,W), each solved only when the caller takes it (one full-size ab
        at a time for a caller that keeps only its encoded results): predict_ab's answer first, then
        variations of it (network_priors), each brought to full size by its own Levin solve."""
        refuse(unknown)
        count = variations.check_count(count)
        priors, default_weight = self.network_priors(L, hint_ab, hint_weight, vibrancy, max_side, palette,
                                                     count, seed)
        weight = default_weight if prior_weight is None else float(prior_weight)
        return (self.spread(L, hint_ab, hint_weight, ab, weight, quality, callback) for ab in priors)

    @staticmethod
    def spread(L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor, ab: torch.Tensor, weight: float,
               quality: str, callback: Callable[[int, float], None] | None) -> torch.Tensor:
        """Colours `ab` at working size brought to the photo's size edge-aware: the Levin solve with them
        as a prior of `weight` and the strokes as constraints.

        Without strokes, on a photo larger than `live`'s proxy, every quality is solved as `live` is
        (on the proxy, then joint bilateral upsampling by the photo's own lightness): the prior is
        the network's colours at 512 px, so a full-size solve has no colour to add that the proxy
        lacks.  Measured: the same PSNR to 0.01 dB on kodim01, kodim15 and mcm05 at 4 MP and kodim01
        at 12 MP, where it took 8.5 s against 20.5 s on two loaded cores."""
        if quality != "live" and proxy.factor(L.shape[-2:]) > 1 and not bool((hint_weight > 0).any()):
            quality = "live"
        prior = F.interpolate(ab[None], size=L.shape[-2:], mode="bilinear", align_corners=False)[0]
        out, _ = levin.solve_ab(L, hint_ab, hint_weight, prior_ab=prior, prior_weight=weight, quality=quality,
                                callback=callback)
        return out

    def suggest(self, L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor, x: int, y: int,
                k: int = 8) -> list[tuple[int, ...]]:
        """The k most likely colours at pixel (x, y), as sRGB u8, most likely first."""
        _, logits, size = self.network(L, hint_ab, hint_weight)
        h, w = L.shape[-2:]
        qy = min(int(y * size[0] / h) // 4, logits.shape[1] - 1)
        qx = min(int(x * size[1] / w) // 4, logits.shape[2] - 1)
        top = torch.softmax(logits[:, qy, qx], 0).topk(min(k, len(self.bins))).indices
        ab = self.bins.to(L.device)[top].T[..., None]                          # (2, k, 1)
        light = L[:, y, x].reshape(1, 1, 1).expand(1, len(top), 1)
        rgb = lab.lab_to_srgb_keep_l(light, ab)[:, :, 0].T                      # (k, 3)
        return [tuple(int(v) for v in c) for c in (rgb * 255 + 0.5).clamp(0, 255).byte().tolist()]

