"""The multigrid preconditioner on CUDA as one CUDA graph, so a megapixel solve is not launch-bound.

A K-cycle is hundreds of small kernel launches per Krylov step, most of them on coarse levels where
each moves a few kilobytes: launched one by one from Python they cost more than the bytes they move.
Every call of a solve's preconditioner has the same shapes and (on CUDA, see Multigrid._coarse) no
host synchronisation, so it is captured once and replayed: one launch per Krylov step.
"""
from __future__ import annotations

import torch

from tinct.engines.optimization.krylov import Operator


class Replayed:
    """`cycle` (tensor -> tensor, the same shapes every call, nothing read back to the host) run as
    usual on its first call, on a side stream (which also compiles the Triton kernels and lets
    cuBLAS set up outside the capture), then captured in a CUDA graph and replayed on every later call."""

    def __init__(self, cycle: Operator):
        self.cycle = cycle
        self.graph: torch.cuda.CUDAGraph | None = None
        self.input: torch.Tensor | None = None
        self.output: torch.Tensor | None = None

    def __call__(self, r: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.graph is not None:
            assert self.input is not None and self.output is not None  # set with the graph
            self.input.copy_(r)
            self.graph.replay()
            # the caller keeps it (GCR stores its directions)
            return self.output.clone() if out is None else out.copy_(self.output)
        side = torch.cuda.Stream(r.device)
        side.wait_stream(torch.cuda.current_stream(r.device))
        with torch.cuda.stream(side):
            first = self.cycle(r)
        torch.cuda.current_stream(r.device).wait_stream(side)
        self.input = r.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # tinctd's other threads go on
            self.output = self.cycle(self.input)
        self.graph = graph
        return first if out is None else out.copy_(first)


def preconditioner(cycle: Operator, like: torch.Tensor) -> Operator:
    """`cycle` replayed from a CUDA graph where `like` is a CUDA tensor; as it is elsewhere."""
    return Replayed(cycle) if like.is_cuda else cycle
