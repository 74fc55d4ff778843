"""tinctd's worker and its job steps (tinct.serve.worker, tinct.serve.job) without sockets: decode, run
and encode each alone, progress, cancel, the out-of-memory fallback, engine failures, shared-memory files,
and the engines' states, which only the worker writes."""
import numpy as np
import pytest
import torch

from daemon_fixture import tinct_client
from test_protocol import message
from tinct import engines
from tinct.serve import job as J
from tinct.serve import protocol as P
from tinct.serve import shm
from tinct.serve.worker import Progress, Worker


def test_progress_follows_the_one_solve_to_its_tolerance_and_never_reaches_one():
    """`final` is one GCR solve to TOL["final"]: its progress must reach the end of the bar, not stall
    part way as it did while it still assumed a CG phase first."""
    final = Progress("final")
    seen = [final.update(i, r) for i, r in [(1, 1e-1), (2, 3e-2), (3, 1e-2), (4, 1e-3), (5, 1e-4)]]
    assert seen == sorted(seen) and 0 < seen[0] < seen[2] < 0.99 and seen[3] == seen[4] == 0.99
    assert final.update(1, 0.5) == 0.99  # a CPU retry starting over never moves the bar back
    assert Progress("preview").update(1, 1e-2) == pytest.approx(0.5)


def worker(device="cpu"):
    return Worker(None, "", torch.device(device) if device == "cpu" else device, {}, None)


def striped(n=64, **over):
    grey = np.tile(np.linspace(0, 255, n, dtype=np.uint8), (n, 1))
    hints = np.zeros((n, n, 4), np.uint8)
    hints[2:6, 2:6] = (220, 30, 30, 255)
    return P.parse_job(message(width=n, height=n, layout="GRAY", pixels=grey.tobytes(), hints=hints.tobytes(),
                               **over), 10 ** 6, ["optimization"])


def test_a_running_job_stops_at_the_next_solver_iteration_when_cancelled():
    w = worker()
    w.cancel_running = True
    reply = w.answer(striped())
    assert reply["ok"] is False and reply["error"]["code"] == "cancelled"
    assert w.answer(striped())["ok"] is False  # the flag holds until the next job starts (run() resets it)


def test_gpu_out_of_memory_is_retried_on_the_cpu_and_said(monkeypatch):
    devices = []

    def engine(job, decoded, device, callback):  # the GPU half is simulated: this machine may have none
        devices.append(str(device))
        if str(device) != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(job, decoded, device, callback)

    real = J.call_engine
    monkeypatch.setattr(J, "call_engine", engine)
    reply = worker("cuda:0").answer(striped())
    assert devices == ["cuda:0", "cpu"]
    assert reply["ok"] and reply["device"] == "cpu" and "CPU" in reply["note"]
    red, _, blue = np.frombuffer(reply["pixels"], np.uint8).reshape(64, 64, 3)[3, 3].astype(int)
    assert red > blue + 10  # the stroke's colour


def test_an_engine_failure_is_an_internal_error_not_a_crash(monkeypatch):
    def broken(*_):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(J, "call_engine", broken)
    reply = worker().answer(striped())
    assert reply["error"]["code"] == "internal" and "kernel exploded" in reply["error"]["message"]


def shared_job(folder, files):
    grey = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    header = {k: v for k, v in message(width=32, height=32, layout="GRAY").items() if k != "pixels"}
    where, lengths = files.place([grey.tobytes()])
    header["shm"] = dict(where, blobs=["pixels"], lengths=lengths)
    return P.parse_job(P.unpack([P.pack(header)], 10 ** 6), 10 ** 6, ["optimization"]), grey


def test_a_shared_memory_job_reads_and_answers_through_the_files(tmp_path, monkeypatch):
    files = tinct_client._SharedFiles(str(tmp_path), {})
    try:
        w = Worker(None, "", torch.device("cpu"), {}, tmp_path)
        j, grey = shared_job(tmp_path, files)
        reply = w.answer(j)
        assert "pixels" not in reply and reply["shm"]["file"] == files.names[1]
        through_file = files.read(reply["shm"], reply["shm"]["lengths"][0])
        assert np.array_equal(np.frombuffer(through_file, np.uint8).reshape(32, 32, 3)[..., 0], grey)

        def full(*_):
            raise OSError(28, "No space left on device")

        j, _ = shared_job(tmp_path, files)
        monkeypatch.setattr(shm, "write", full)  # a full tmpfs: the result comes back as a frame instead
        reply = w.answer(j)
        assert "shm" not in reply and reply["pixels"] == through_file
    finally:
        files.close()


def test_decode_reads_the_layer_and_strokes_and_keeps_only_the_options_its_engine_knows():
    decoded = J.decode(striped(options={"quality": "preview", "vibrancy": 0.3}), lambda *_: memoryview(b""), None)
    assert decoded.engine is engines.get_engine("optimization")
    assert decoded.image.shape == (64, 64) and decoded.hints is not None and decoded.hints.shape == (64, 64, 4)
    assert decoded.original.shape == (64, 64, 1) and decoded.options == {"quality": "preview"}
    assert decoded.quality == "preview" and J.decode(striped(), None, None).quality == "final"  # the engine's own


def test_run_gives_the_result_and_its_device_and_turns_tincts_own_sentences_into_bad_request(monkeypatch):
    j = striped()
    decoded = J.decode(j, None, None)
    result, device, note = J.run(j, decoded, torch.device("cpu"))
    assert isinstance(result, np.ndarray) and result.shape == (64, 64, 3) and str(device) == "cpu" and note is None
    assert result[3, 3, 0] > result[3, 3, 2] + 10  # the red stroke

    def refuses(*_):
        raise ValueError("the hints layer is 3x3 but the photo is 64x64")

    monkeypatch.setattr(J, "call_engine", refuses)
    with pytest.raises(P.ProtocolError) as err:
        J.run(j, decoded, torch.device("cpu"))
    assert err.value.code == "bad_request" and "3x3" in err.value.message


def test_encode_puts_the_result_in_the_layout_the_layer_came_in():
    j = striped()
    decoded = J.decode(j, None, None)
    result = np.zeros((64, 64, 3), np.uint8)
    result[..., 1] = 77
    reply = J.encode(j, decoded, result, None, None)
    assert (reply["width"], reply["height"], reply["sample"]) == (64, 64, "u8") and reply["layout"] == "RGB"
    assert np.frombuffer(reply["pixels"], np.uint8).reshape(64, 64, 3)[..., 1].tolist() == [[77] * 64] * 64


def test_an_engine_that_cannot_load_is_unsupported_and_the_worker_records_why(monkeypatch):
    monkeypatch.setitem(engines.ENGINES, "optimization", "tinct.no_such_module:Engine")
    monkeypatch.delitem(engines._loaded, "optimization", raising=False)
    w = worker()
    w.engines = {"optimization": "ready"}
    reply = w.answer(striped())
    assert reply["ok"] is False and reply["error"]["code"] == "unsupported"
    state = w.engine_states()["optimization"]
    assert state.startswith("not installed:") and "no_such_module" in state
    w.engine_states()["optimization"] = "ready"  # a copy: the socket thread cannot change the worker's record
    assert w.engine_states()["optimization"] == state
