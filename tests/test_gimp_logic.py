"""The GIMP plug-in's decisions, tested without GIMP (plugins/gimp/tinct-colorize/colorize_logic.py).

The error sentences are also checked against the real client and a real tinctd, so what GIMP
shows for "daemon not running", "image too large" and "model missing" is what users will read.
"""

import sys
from pathlib import Path

import colorize_logic as logic  # plugins/gimp/tinct-colorize and plugins/common: pyproject's pytest pythonpath
import pytest

import tinct_plugin
from daemon_fixture import free_port, tinct_client
from tinct.engines.learned import engine as learned

REPO = Path(__file__).resolve().parents[1]
UNCHANGED = "The image was not changed."


@pytest.mark.parametrize("nick, gray, alpha, babl, layout, sample, bpp", [
    ("u8-non-linear", False, True, "R'G'B'A u8", "RGBA", "u8", 4),
    ("u8-perceptual", False, False, "R'G'B' u8", "RGB", "u8", 3),
    ("u16-non-linear", False, True, "R'G'B'A u16", "RGBA", "u16", 8),
    ("u16-linear", True, False, "Y' u16", "GRAY", "u16", 2),
    ("u8-non-linear", True, True, "Y'A u8", "GRAYA", "u8", 2),
    ("u32-linear", False, False, "R'G'B' float", "RGB", "f32", 12),
    ("half-perceptual", False, True, "R'G'B'A float", "RGBA", "f32", 16),
    ("float-linear", True, False, "Y' float", "GRAY", "f32", 4),
    ("double-non-linear", False, True, "R'G'B'A float", "RGBA", "f32", 16),
])
def test_layer_format_keeps_precision_and_reads_srgb_encoded(nick, gray, alpha, babl, layout, sample, bpp):
    fmt = logic.layer_format(nick, gray, alpha)
    assert (fmt.babl, fmt.layout, fmt.sample, fmt.bytes_per_pixel, fmt.has_alpha) == (babl, layout, sample, bpp, alpha)


def test_layer_format_refuses_an_unknown_precision():
    with pytest.raises(logic.ColorizeError, match="u64-linear"):
        logic.layer_format("u64-linear", False, False)


@pytest.mark.parametrize("asked, answered", [
    (("GRAY", "u8"), ("RGB", "u8")), (("GRAYA", "u16"), ("RGBA", "u16")),
    (("RGB", "f32"), ("RGB", "f32")), (("RGBA", "u8"), ("RGBA", "u8")),
])
def test_result_format_accepts_the_agreed_answers(asked, answered):
    out = logic.result_format(logic.PixelFormat(*asked), {"layout": answered[0], "sample": answered[1]})
    assert (out.layout, out.sample) == answered
    assert out.babl.startswith("R'G'B'")


@pytest.mark.parametrize("answered", [("GRAY", "u8"), ("RGBA", "u8"), ("RGB", "u16"), ("BGRA", "u8"), (None, None)])
def test_result_format_refuses_anything_else(answered):
    with pytest.raises(logic.ColorizeError, match="update the daemon and the plug-in"):
        logic.result_format(logic.PixelFormat("RGB", "u8"), {"layout": answered[0], "sample": answered[1]})


def test_check_reply_size():
    fmt = logic.PixelFormat("RGBA", "u16")
    logic.check_reply_size({"width": 3, "height": 2, "pixels": bytes(48)}, 3, 2, fmt)
    for reply in ({"width": 3, "height": 2, "pixels": bytes(47)}, {"width": 2, "height": 3, "pixels": bytes(48)}):
        with pytest.raises(logic.ColorizeError, match="wrong size"):
            logic.check_reply_size(reply, 3, 2, fmt)


def _hints(alphas):
    return b"".join(bytes([200, 10, 10, a]) for a in alphas)


def test_has_strokes_looks_at_alpha_only():
    assert not logic.has_strokes(_hints([0, 0, 0]))
    assert logic.has_strokes(_hints([0, 1, 0]))
    assert not logic.has_strokes(b"")


def test_a_reference_lets_the_optimization_engine_run_without_strokes():
    assert logic.hints_to_send("optimization", _hints([0, 0]), "Colorize hints", referenced=True) is None
    with pytest.raises(logic.ColorizeError, match="choose a colour photo as the reference"):
        logic.hints_to_send("optimization", _hints([0, 0]), "Colorize hints")


def test_srgb_u8_encodes_gegls_linear_light():
    assert logic.srgb_u8((0.0, 1.0, 0.2158)) == (0, 255, 128)
    assert logic.srgb_u8((-0.5, 2.0, 0.002)) == (0, 255, 7)   # out of gamut clipped; the linear toe


def test_hints_to_send_passes_strokes_to_either_engine():
    hints = _hints([0, 255])
    assert logic.hints_to_send("optimization", hints, "Colorize hints") is hints
    assert logic.hints_to_send("learned", hints, "Colorize hints") is hints


def test_learned_engine_colorizes_without_strokes():
    assert logic.hints_to_send("learned", _hints([0, 0]), "Colorize hints") is None
    assert logic.hints_to_send("learned", None, None) is None


def test_optimization_engine_explains_it_needs_strokes():
    with pytest.raises(logic.ColorizeError, match='paint a few strokes on the "My strokes" layer'):
        logic.hints_to_send("optimization", _hints([0, 0]), "My strokes")
    with pytest.raises(logic.ColorizeError, match="Add Hints Layer") as info:
        logic.hints_to_send("optimization", None, None)
    assert "Learned engine" in str(info.value)


def test_selection_to_send():
    assert logic.selection_to_send(None) is None
    assert logic.selection_to_send(bytes([255]) * 6) is None  # all selected: send nothing
    partial = bytes([0, 128, 255])
    assert logic.selection_to_send(partial) is partial
    with pytest.raises(logic.ColorizeError, match="does not touch this layer"):
        logic.selection_to_send(bytes(6))


def test_engine_options():
    assert tinct_plugin.engine_options("learned", 0.25) == {"vibrancy": 0.25}
    assert tinct_plugin.engine_options("optimization", 0.25) == {}


def test_default_vibrancy_is_the_learned_engines_own():
    """The dialog's default must colour like the engine's automatic default (annealing T 0.38)."""
    assert tinct_plugin.DEFAULT_VIBRANCY == pytest.approx(learned.DEFAULT_VIBRANCY, abs=0.005)
    assert learned.temperature(tinct_plugin.DEFAULT_VIBRANCY) == pytest.approx(learned.AUTO_TEMPERATURE, abs=0.005)


def test_source_tattoo_prefers_the_recorded_source():
    assert logic.source_tattoo(7, None, None) == 7
    assert logic.source_tattoo(7, 3, None) == 3
    assert logic.source_tattoo(7, None, 4) == 4


def test_tattoo_payload_round_trip_and_foreign_payloads():
    assert logic.decode_tattoo(logic.encode_tattoo(42)) == 42
    assert logic.decode_tattoo(list(logic.encode_tattoo(9))) == 9  # GIMP hands parasite data as a list
    assert logic.decode_tattoo(b"\xff\x00") is None
    assert logic.decode_tattoo(b"seven") is None


def test_check_hints_layer():
    logic.check_hints_layer("Colorize hints", is_source=False, has_alpha=True)
    with pytest.raises(logic.ColorizeError, match="select the photo layer"):
        logic.check_hints_layer("Colorize hints", is_source=True, has_alpha=True)
    with pytest.raises(logic.ColorizeError, match="Add Alpha Channel"):
        logic.check_hints_layer("Strokes", is_source=False, has_alpha=False)


def test_error_sentence_passes_the_clients_sentence_through():
    error = tinct_client.TinctError("unavailable", "The Tinct daemon is not running at tcp://127.0.0.1:5571.")
    assert logic.error_sentence(error) == error.message


@pytest.mark.parametrize("code, message, sentence", [
    ("too_large", "the layer is 30 megapixels; this tinctd accepts at most 25 (tinctd --max-megapixels)",
     "Tinct could not colorize this layer: the layer is 30 megapixels; this tinctd accepts at most 25 "
     "(tinctd --max-megapixels). " + UNCHANGED),
    ("too_large", "The layer is 30 megapixels; this Tinct daemon accepts at most 25. Colorize a smaller layer.",
     "Tinct could not colorize this layer: the layer is 30 megapixels; this Tinct daemon accepts at most 25. "
     "Colorize a smaller layer. " + UNCHANGED),
    ("internal", "GPU driver failed", "Tinct could not colorize this layer: GPU driver failed. " + UNCHANGED),
])
def test_error_sentence_makes_the_daemons_refusals_a_sentence(code, message, sentence):
    assert logic.error_sentence(tinct_client.TinctError(code, message)) == sentence


def _sentence(call):
    with pytest.raises(tinct_client.TinctError) as info:
        call()
    return logic.error_sentence(info.value)


def test_sentences_from_the_real_client_and_a_real_tinctd(tinctd, tmp_path, monkeypatch):
    """What GIMP would show, produced by a real tinctd without the learned model and with a small limit."""
    monkeypatch.setenv("TINCT_MODEL", str(tmp_path / "no-model.pt"))
    daemon = tinctd(tmp_path, "--max-megapixels", "0.01")
    try:
        with daemon.client(retries=0) as client:
            def colorize(width, engine):
                return client.colorize(width=width, height=100, layout="GRAY", sample="u8",
                                       pixels=bytes(width * 100), engine=engine)

            too_large = _sentence(lambda: colorize(200, "optimization"))
            assert "0.02 megapixels" in too_large and "Colorize a smaller layer" in too_large
            assert too_large.endswith(UNCHANGED)
            missing = _sentence(lambda: colorize(50, "learned"))
            assert missing.startswith("Tinct could not colorize this layer: "
                                      "the learned engine's model is not installed")
            assert "choose the Optimization engine" in missing and missing.endswith(UNCHANGED)
            assert colorize(50, "optimization")["layout"] == "RGB"  # and the daemon still serves
    finally:
        assert daemon.stop() == 0


def test_sentences_when_the_daemon_is_not_running_or_cannot_be_started():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with tinct_client.Client(endpoint, timeout=5, retries=0, start_command=[]) as client:
        not_running = _sentence(client.hello)
    assert not_running.startswith(f"The Tinct daemon is not running at {endpoint}.")
    assert "Start it with the command 'tinctd'" in not_running
    with tinct_client.Client(endpoint, timeout=5, retries=0, start_command="/opt/no-such-tinctd") as client:
        assert _sentence(client.hello).startswith("Could not start the Tinct daemon with '/opt/no-such-tinctd'")


def test_error_sentence_for_our_own_and_unexpected_failures():
    assert logic.error_sentence(logic.ColorizeError("Select a layer.")) == "Select a layer."
    missing = ImportError("No module named 'zmq'", name="zmq")
    sentence = logic.error_sentence(missing)
    assert "install-gimp-plugin.sh" in sentence and "Python %d.%d" % sys.version_info[:2] in sentence
    sentence = logic.error_sentence(KeyError("pixels"))
    assert "not changed" in sentence and "KeyError" in sentence


def test_change_failed_says_whether_the_image_is_as_it_was():
    reason = "Item 'photo' (3) cannot be used because it has not been added to an image"
    put_back = logic.change_failed("add the colorized layer", logic.GimpRefused(reason), restored=True)
    assert put_back == f"GIMP could not add the colorized layer ({reason}). " + UNCHANGED
    partly = logic.change_failed("add the hints layer", KeyError("pixels"), restored=False)
    assert partly.startswith("GIMP could not add the hints layer (KeyError: 'pixels'), and Colorize could not")
    assert "Edit → Undo" in partly and UNCHANGED not in partly
