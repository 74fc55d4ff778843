"""Train the hint network on the shared photo shards (resumable).

    tinct train [--steps N] [--batch 16] [--crop 128] [--run runs/hint-v1] [--export PATH]

Loss: cross-entropy over the ab bins with Zhang et al. 2016's class rebalancing (weights
proportional to ((1 - 1/2) p + 1/2 / Q)^-1, p measured on our own training photos) plus a
smooth-L1 ab regression.  Checkpoints (model, optimizer, step, random state) go to the run
folder every few minutes, and fp16 weights for the engine are exported beside them, so a
run killed at any moment resumes where it stopped, on this machine or a GPU one.
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tinct.color import lab
from tinct.color.hints import from_layer
from tinct.engines.learned import net
from tinct.engines.learned.engine import MODEL_PATH

from . import data, measure

LAMBDA = 0.5           # rebalancing mix (Zhang 2016)
CLASS_WEIGHT = 1.0     # weight of the cross-entropy against the regression term
EXPORT_EVERY = 300.0   # seconds between checkpoints/exports


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20000, help="total optimizer steps (resumes to reach this)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128, help="training crop side (multiple of 8)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--decay-from", type=int, default=None,
                        help="step where the learning rate starts its cosine decay to lr/20 at --steps "
                        "(default: half of --steps)")
    parser.add_argument("--width", type=int, default=32, help="channels of the first level")
    parser.add_argument("--shape", choices=net.SHAPES, default="u-net",
                        help="network shape of a new run (a resumed one keeps its own)")
    parser.add_argument("--run", dest="run_dir", default="runs/hint-v1",
                        help="checkpoint folder (resumed if present)")
    parser.add_argument("--export", default=None, help="fp16 weights for the engine (default: the package's own, "
                        "models/tinct-hint-v1.pt, which the engine reads)")
    parser.add_argument("--data", default=None, help="folder with train-*.tar (default: shared/data)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16 autocast (weights stay fp32): 1.8x the steps per minute of fp32 on an "
                        "AVX-512 BF16 CPU (benchmarks/training.py), and the usual choice on CUDA")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos (tests)")
    parser.add_argument("--init", default=None, help="start from exported weights (e.g. the committed "
                        "models/tinct-hint-v1.pt) when the run folder has no checkpoint")


def nearest_bin(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """(N, 2, h, w) ab -> (N, h, w) index of the closest bin centre."""
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    return torch.cdist(flat, bins).argmin(1).view(ab.shape[0], *ab.shape[2:])


def class_weights(photos: np.ndarray, among: np.ndarray, bins: torch.Tensor, sample: int = 2000) -> torch.Tensor:
    """Rebalancing weights from the ab distribution of our photos (those indexed by `among`),
    Gaussian-smoothed (sigma 5)."""
    idx = among[np.linspace(0, len(among) - 1, min(sample, len(among))).astype(int)]
    rgb = torch.from_numpy(np.stack([photos[i][::4, ::4] for i in idx])).permute(0, 3, 1, 2).float() / 255
    ab = lab.srgb_to_lab(rgb)[:, 1:]
    counts = torch.bincount(nearest_bin(ab, bins).view(-1), minlength=len(bins)).double()
    d2 = torch.cdist(bins.double(), bins.double()) ** 2
    p = (torch.exp(-d2 / (2 * 5.0 ** 2)) @ counts)
    p = p / p.sum()
    w = 1.0 / ((1 - LAMBDA) * p + LAMBDA / len(bins))
    return (w / (p * w).sum()).float()


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Constant, then a cosine down to lr/20 at the last step: a short run still ends settled."""
    start = args.steps // 2 if args.decay_from is None else args.decay_from
    if step < start or args.steps <= start:
        return args.lr
    t = min(1.0, (step - start) / (args.steps - start))
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def losses(model: net.HintNet, lab_batch: torch.Tensor, hint_ab: torch.Tensor, hint_w: torch.Tensor,
           bins: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    L, ab = lab_batch[:, :1], lab_batch[:, 1:]
    pred, logits = model(net.network_input(L, hint_ab, hint_w).contiguous(memory_format=torch.channels_last))
    target = nearest_bin(F.avg_pool2d(ab, 4), bins)
    ce = F.cross_entropy(logits, target, weight=weights)
    reg = F.smooth_l1_loss(pred, lab.normalize_ab(ab), beta=0.05)
    return CLASS_WEIGHT * ce + reg, ce, reg


@torch.no_grad()
def validate(model: net.HintNet, photos: np.ndarray, bins: torch.Tensor) -> dict[int, float]:
    """Mean PSNR (uint8 RGB) on the held-out photos with no hints and with 10 simulated hints."""
    model.eval()
    held = photos[-data.VAL_PHOTOS:]
    rgb = torch.from_numpy(np.array(held)).permute(0, 3, 1, 2).float() / 255
    labs = lab.srgb_to_lab(rgb)
    out = {}
    for n in (0, 10):
        rng = np.random.default_rng(0)
        layers = [measure.hints_of(np.array(p), n, rng) for p in held]
        pairs = [from_layer(layer) for layer in layers]
        hint_ab = torch.stack([p[0] for p in pairs])
        hint_w = torch.stack([p[1] for p in pairs])
        device = next(model.parameters()).device
        pred, _ = model(net.network_input(labs[:, :1], hint_ab, hint_w).to(device))
        res = lab.lab_to_srgb_keep_l(labs[:, :1], lab.denormalize_ab(pred.float().cpu()))
        ref_u8 = np.array(held)
        got = (res.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        out[n] = float(np.mean([measure.psnr(g, r) for g, r in zip(got, ref_u8)]))
    model.train()
    return out


def export(model: net.HintNet, bins: torch.Tensor, weights: torch.Tensor, meta: dict[str, Any], path: Path) -> None:
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": "tinct-hint", "format_version": 1, "state": state, "bins": bins,
                "class_weights": weights, **meta}, tmp)
    tmp.replace(path)  # never leave a half-written model where the engine looks


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    photos = data.load_shards(Path(args.data) if args.data else data.default_data_dir(),
                              run_dir.parent / "train160.npy")
    if args.limit:
        photos = photos[:args.limit]
    trainable = data.training_indices(len(photos), Path(args.data) if args.data else data.default_data_dir())
    ckpt_path = run_dir / "checkpoint.pt"
    init = None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        bins, weights, width = ckpt["bins"], ckpt["class_weights"], ckpt["width"]
        shape = ckpt.get("shape", "u-net")
    elif args.init:  # a new machine: continue from the committed weights (the optimizer starts afresh)
        init = torch.load(args.init, weights_only=True, map_location="cpu")
        ckpt, bins, weights, width = None, init["bins"], init["class_weights"], init["width"]
        shape = init.get("shape", "u-net")
    else:
        ckpt, bins, width, shape = None, net.ab_bins(), args.width, args.shape
        weights = class_weights(photos, trainable, bins)
    model = net.HintNet(len(bins), width, shape).to(  # pyright: ignore[reportCallIssue]  # stubs lack memory_format
        device, memory_format=torch.channels_last)  # ~10 % faster on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    step, seconds, history, images = 0, 0.0, [], 0
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        step, seconds, history = ckpt["step"], ckpt["seconds"], list(ckpt["history"])
        images = ckpt.get("images", history[-1]["images"] if history else 0)
        print(f"resumed {ckpt_path} at step {step}")
    elif init:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init["state"].items()})
        step, history = init["step"], list(init["history"])
        seconds = 60 * history[-1]["minutes"] if history else 0.0
        images = history[-1]["images"] if history else 0
        print(f"started from {args.init} at step {step}")
    bins_d, weights_d = bins.to(device), weights.to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"{shape}, {params / 1e6:.2f} M parameters, {len(bins)} ab bins, {len(trainable)} training photos, "
          f"device {device}")
    last_save, started, saved_step = time.monotonic(), time.monotonic() - seconds, step
    use_bf16 = args.precision == "bf16"
    while step < args.steps:
        index = trainable[torch.randint(0, len(trainable), (args.batch,), generator=gen).numpy()]
        labs = data.batch(photos, index, args.crop, gen)
        hint_ab, hint_w = data.simulate_hints(labs[:, 1:], gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss, ce, reg = losses(model, labs.to(device), hint_ab.to(device), hint_w.to(device), bins_d, weights_d)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        images += args.batch
        if step % 20 == 0 or step == args.steps:
            el = time.monotonic() - started
            rate = (time.monotonic() - last_save) / max(step - saved_step, 1)  # this session's pace
            print(f"step {step}/{args.steps} loss {loss.item():.4f} (ce {ce.item():.3f}, l1 {reg.item():.4f}) "
                  f"lr {learning_rate(step, args):.2e} {el / 60:.1f} min, {rate:.2f} s/step, "
                  f"{rate * (args.steps - step) / 60:.0f} min to go", flush=True)
        if time.monotonic() - last_save > EXPORT_EVERY or step == args.steps:
            val = validate(model, photos, bins)
            history.append({"step": step, "images": images, "minutes": (time.monotonic() - started) / 60,
                            "val_psnr_0": val[0], "val_psnr_10": val[10], "device": str(device),
                            "lr": learning_rate(step, args), "batch": args.batch, "crop": args.crop,
                            "precision": args.precision})
            print(f"validation at step {step}: PSNR {val[0]:.2f} dB (0 hints), {val[10]:.2f} dB (10 hints)", flush=True)
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                        "step": step, "images": images, "seconds": time.monotonic() - started, "history": history,
                        "bins": bins,
                        "class_weights": weights, "width": width, "shape": shape}, ckpt_path.with_suffix(".tmp"))
            ckpt_path.with_suffix(".tmp").replace(ckpt_path)
            export(model, bins, weights, {"width": width, "shape": shape, "step": step, "history": history,
                                          "crop": args.crop, "batch": args.batch}, Path(args.export or MODEL_PATH))
            last_save, saved_step = time.monotonic(), step
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    assert __doc__ is not None  # this module's docstring
    parser = argparse.ArgumentParser(prog="tinct train", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
