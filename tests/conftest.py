"""Shared test set-up: one torch thread, because the CI machine has two cores and
other jobs (a daemon under test, an editor) share them; tiny tensors get no faster
from threads and contention makes them much slower.  And the one way tests start tinctd:
the `tinctd` factory (stopped after each test) and a module-wide `daemon`."""
from pathlib import Path

import pytest
import tinct_krita  # plugins/krita, on pytest's pythonpath (pyproject.toml)
import torch

from daemon_fixture import RunningDaemon

torch.set_num_threads(1)
# the Krita plugin as the installer lays it out: plugins/common's modules inside the package
tinct_krita.__path__.append(str(Path(__file__).resolve().parents[1] / "plugins" / "common"))


@pytest.fixture
def tinctd():
    """Start real tinctd processes (RunningDaemon's arguments); each is stopped when the test ends,
    failed or not, so no tinctd outlives its test."""
    started: list[RunningDaemon] = []

    def start(*args, **kw) -> RunningDaemon:
        started.append(RunningDaemon(*args, **kw))
        return started[-1]

    yield start
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One real tinctd shared by a test module's tests: it must outlive them all and stop cleanly."""
    d = RunningDaemon(tmp_path_factory.mktemp("tinctd"))
    yield d
    assert d.alive(), "tinctd died during the tests"
    assert d.stop() == 0  # SIGTERM shuts down cleanly
