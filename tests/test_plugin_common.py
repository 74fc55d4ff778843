"""plugins/common/tinct_plugin.py, the decisions the GIMP and Krita plugins share: each plugin's
tests (test_gimp_logic.py, test_krita_logic.py) check them through its own menu paths and names;
here what the editors pass in, and the vibrancy default tinctd's hello advertises."""

import sys

import pytest

import tinct_plugin  # from plugins/common, which daemon_fixture put on sys.path


@pytest.mark.parametrize("hello", [None, {}, {"defaults": None}, {"defaults": {}}, {"defaults": {"vibrancy": None}},
                                   {"defaults": {"vibrancy": "0.4"}}, {"defaults": {"vibrancy": True}},
                                   {"defaults": {"vibrancy": 1.5}}, {"defaults": {"vibrancy": -0.1}}])
def test_default_vibrancy_falls_back_to_the_one_constant(hello):
    assert tinct_plugin.default_vibrancy(hello) == tinct_plugin.DEFAULT_VIBRANCY


def test_default_vibrancy_is_the_one_tinctds_hello_advertises():
    assert tinct_plugin.default_vibrancy({"defaults": {"vibrancy": 0.4, "quality": "final"}}) == 0.4
    assert tinct_plugin.default_vibrancy({"defaults": {"vibrancy": 1}}) == 1.0


def test_a_real_tinctds_hello_gives_its_own_default(tinctd, tmp_path):
    daemon = tinctd(tmp_path)
    try:
        with daemon.client(retries=0) as client:
            vibrancy = tinct_plugin.default_vibrancy(client.hello())
    finally:
        assert daemon.stop() == 0
    assert vibrancy == pytest.approx(tinct_plugin.DEFAULT_VIBRANCY, abs=0.005)


def test_engine_options_send_quality_only_when_chosen():
    assert tinct_plugin.engine_options("learned", 0.5, "preview") == {"quality": "preview", "vibrancy": 0.5}
    assert tinct_plugin.engine_options("optimization", 0.5, "final") == {"quality": "final"}
    assert tinct_plugin.engine_options("learned", 1) == {"vibrancy": 1.0}


def test_hints_to_send_names_the_layer_or_the_editors_menu():
    hints = bytes([1, 2, 3, 255])
    assert tinct_plugin.hints_to_send("optimization", hints, True, "Strokes", "Menu → Add") is hints
    assert tinct_plugin.hints_to_send("learned", hints, False, "Strokes", "Menu → Add") is None
    with pytest.raises(tinct_plugin.ColorizeError, match='strokes on the "Strokes" layer over the photo'):
        tinct_plugin.hints_to_send("optimization", hints, False, "Strokes", "Menu → Add")
    with pytest.raises(tinct_plugin.ColorizeError, match=r"on a hints layer \(Menu → Add\) over the photo"):
        tinct_plugin.hints_to_send("optimization", None, False, None, "Menu → Add")


def test_selection_to_send_takes_the_editors_buffer_and_names_its_deselect():
    assert tinct_plugin.selection_to_send(bytearray([0, 255]), "Select → Nothing") == bytes([0, 255])
    assert tinct_plugin.selection_to_send(bytearray([255, 255]), "Select → Nothing") is None
    with pytest.raises(tinct_plugin.ColorizeError, match=r"remove the selection \(Select → Nothing\)"):
        tinct_plugin.selection_to_send(bytearray(2), "Select → Nothing")


def test_error_sentence_names_the_editor_and_its_remedy():
    missing = ImportError("No module named 'msgpack'", name="msgpack")
    version = "%d.%d" % sys.version_info[:2]
    assert tinct_plugin.error_sentence(missing, "Paint", "reinstall it") == \
        f"Colorize needs pyzmq and msgpack in Paint's Python {version}, and msgpack is missing: reinstall it."
    assert tinct_plugin.error_sentence(tinct_plugin.ColorizeError("Select a layer."), "Paint", "") == "Select a layer."
    assert tinct_plugin.error_sentence(ValueError("x"), "Paint", "") == \
        "Colorize failed unexpectedly (ValueError: x); the image was not changed. Please report this."
    assert not tinct_plugin.expected(ImportError("zmq", name="zmq"))
