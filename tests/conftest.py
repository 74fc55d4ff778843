"""Shared test set-up: one torch thread, because the CI machine has two cores and
other jobs (a daemon under test, an editor) share them; tiny tensors get no faster
from threads and contention makes them much slower."""
import torch

torch.set_num_threads(1)
