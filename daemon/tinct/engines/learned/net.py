"""The hint network: lightness + sparse hints in, colour out (Zhang et al. 2017 style).

Input (4, H, W): normalised L, hint ab / 110, hint mask.  A small U-Net with dilated
convolutions in the middle sees far enough to know what a region is; a global branch
(Iizuka et al. 2016) pools the whole image into a vector added back into the middle,
so a scene's overall look (sky, foliage, indoor light) informs every pixel.  Two heads:
ab regression at full working resolution (the default answer), and logits over the
quantised in-gamut ab bins at 1/4 resolution (Zhang et al. 2016), which give the
annealed-mean "vibrancy" control and the colour suggestions.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinct.color import lab

BIN_SIZE = 10.0


def ab_bins(step: float = BIN_SIZE) -> torch.Tensor:
    """Centres (Q, 2) of the step x step ab cells that any sRGB colour falls in.

    Zhang et al. quantise ab in cells of 10 and keep the in-gamut ones (313 from
    ImageNet's occupancy); we keep every cell that some sRGB colour at some
    lightness reaches, computed from our own Lab code (257 cells).
    """
    g = torch.arange(-110.0, 110.0 + step / 2, step, dtype=torch.float64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    hit = torch.zeros_like(a, dtype=torch.bool)
    offsets = torch.linspace(-step / 2, step / 2, 6, dtype=torch.float64)
    for da in offsets:
        for db in offsets:
            for light in torch.arange(0.0, 100.1, 2.0, dtype=torch.float64):
                full = torch.full_like(a, light)  # pyright: ignore[reportArgumentType]  # torch takes a 0-d tensor
                rgb = lab.lab_to_srgb(torch.stack([full, a + da, b + db]), clip=False)
                hit |= ((rgb >= 0) & (rgb <= 1)).all(0)
    return torch.stack([a[hit], b[hit]], 1).float()


SHAPES = ("u-net", "separable")


class Depthwise(nn.Conv2d):
    """A depthwise 3x3 convolution that stays on oneDNN where the engine switches oneDNN off.

    The engine runs the network on the CPU without oneDNN because oneDNN's 1x1 convolutions sum
    their channels in an order that depends on the thread count.  Its depthwise kernel does not (each
    output is nine products of one channel; tests/test_learned.py checks 1-4 threads), and PyTorch's
    own depthwise path is about 5x slower, the most of the network's time at 512 px."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available() and x.device.type == "cpu"
                and x.dtype == self.weight.dtype == torch.float32):
            return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride,
                                                     self.dilation, self.groups)
        return super().forward(x)


def conv3(cin: int, cout: int, dilation: int, shape: str) -> nn.Module:
    """A 3x3 convolution; in the "separable" shape (MobileNet style, built for CPU throughput: 2x
    the training steps per minute in bf16) a depthwise 3x3 and a pointwise 1x1, except on the 4 input channels."""
    if shape == "u-net" or cin <= 4:
        return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
    return nn.Sequential(Depthwise(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1))


def block(cin: int, cout: int, shape: str, n: int = 2, dilation: int = 1) -> nn.Sequential:
    layers = []
    for i in range(n):
        layers += [conv3(cin if i == 0 else cout, cout, dilation, shape), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class HintNet(nn.Module):
    def __init__(self, bins: int, width: int = 32, shape: str = "u-net"):
        super().__init__()
        if shape not in SHAPES:
            raise ValueError(f"network shape {shape!r} is not one of {SHAPES}")
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 8 * width
        self.enc1, self.enc2, self.enc3 = block(4, c1, shape), block(c1, c2, shape), block(c2, c3, shape)
        self.enc4 = block(c3, c4, shape)
        self.middle = nn.Sequential(block(c4, c4, shape, dilation=2), block(c4, c4, shape, dilation=4))
        self.glob = nn.Sequential(nn.Linear(c4, c4), nn.ReLU(inplace=True), nn.Linear(c4, c4))
        self.up3, self.dec3 = nn.ConvTranspose2d(c4, c3, 2, 2), block(2 * c3, c3, shape)
        self.up2, self.dec2 = nn.ConvTranspose2d(c3, c2, 2, 2), block(2 * c2, c2, shape)
        self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, 2), block(2 * c1, c1, shape)
        self.classes = nn.Conv2d(c3, bins, 1)
        self.ab = nn.Conv2d(c1, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, 4, H, W) with H, W multiples of 8 -> (ab (N, 2, H, W) in ab/110 units, logits (N, Q, H/4, W/4))."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        m = self.middle(e4)
        m = m + self.glob(m.mean((2, 3)))[..., None, None]
        d3 = self.dec3(torch.cat([self.up3(m), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        # oneDNN's 1x1 convolutions sum their channels in an order that depends on the thread
        # count (its 3x3 ones do not); PyTorch's own path does not, so a photo comes out the same
        # bytes on a laptop, in tinctd and on a cluster node.  The two heads are small.
        # (Set by hand: mkldnn.flags() also sets TF32 and warns about Intel GPUs on every call.)
        was, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False
        try:
            return torch.tanh(self.ab(d1)), self.classes(d3)
        finally:
            torch.backends.mkldnn.enabled = was


def network_input(L: torch.Tensor, hint_ab: torch.Tensor, hint_weight: torch.Tensor) -> torch.Tensor:
    """(N, 1|2|1, H, W) lightness 0..100, hint ab, hint weight -> the network's 4 channels."""
    return torch.cat([lab.normalize_l(L), lab.normalize_ab(hint_ab) * (hint_weight > 0), hint_weight], 1)


def decode(logits: torch.Tensor, bins: torch.Tensor, temperature: float) -> torch.Tensor:
    """Annealed mean of the distribution (Zhang 2016): T=1 the mean, T->0 the mode; ab in Lab units."""
    if temperature <= 1e-3:
        return bins[logits.argmax(1)].permute(0, 3, 1, 2)
    p = torch.softmax(logits / temperature, 1)
    return torch.einsum("nqhw,qc->nchw", p, bins)
