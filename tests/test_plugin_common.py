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


def test_optimization_runs_without_strokes_when_a_reference_gives_colours():
    assert tinct_plugin.hints_to_send("optimization", None, False, None, "Menu → Add", referenced=True) is None
    with pytest.raises(tinct_plugin.ColorizeError, match="choose a colour photo as the reference"):
        tinct_plugin.hints_to_send("optimization", None, False, None, "Menu → Add", referenced=False)


def test_reference_fields_read_a_colour_layer_only():
    reads = []

    def read():
        reads.append(1)
        return b"\1\2\3\4" * 6

    assert tinct_plugin.reference_fields("Sky", 3, 2, "BGRA", "u8", read) == {
        "reference": b"\1\2\3\4" * 6, "reference_width": 3, "reference_height": 2,
        "reference_layout": "BGRA", "reference_sample": "u8"}
    with pytest.raises(tinct_plugin.ColorizeError, match='"Sky" is grey, so it has no colours to give'):
        tinct_plugin.reference_fields("Sky", 3, 2, "GRAYA", "u8", read)
    with pytest.raises(tinct_plugin.ColorizeError, match='"Sky" is empty'):
        tinct_plugin.reference_fields("Sky", 0, 2, "RGBA", "u8", read)
    assert len(reads) == 1, "a reference that is refused was read"


def test_palette_goes_to_the_learned_engine_only_without_repeats():
    colours = [(255.4, -3, 20), (255, 0, 20), [10, 20, 30, 255]]
    assert tinct_plugin.palette_to_send("learned", colours) == [[255, 0, 20], [10, 20, 30]]
    assert tinct_plugin.palette_to_send("optimization", colours) is None   # it takes none: the choice waits
    assert tinct_plugin.palette_to_send("learned", None) is None
    with pytest.raises(tinct_plugin.ColorizeError, match="The palette “Empty” has no colours"):
        tinct_plugin.palette_to_send("learned", [], "palette “Empty”")
    many = [(i % 256, i // 256, 0) for i in range(257)]
    with pytest.raises(tinct_plugin.ColorizeError, match="257 colours; Tinct takes at most 256"):
        tinct_plugin.palette_to_send("learned", many)


def test_guidance_fields_are_none_without_guidance():
    assert tinct_plugin.guidance_fields(None, None) is None
    reference = {"reference": b"", "reference_width": 1}
    assert tinct_plugin.guidance_fields(reference, [[1, 2, 3]]) == {**reference, "palette": [[1, 2, 3]]}
    assert tinct_plugin.guidance_fields(reference, None, [[0, 0, 1, 1, 0, 0, 5, 5]]) == \
        {**reference, "swatches": [[0, 0, 1, 1, 0, 0, 5, 5]]}
    assert tinct_plugin.guidance_fields(reference, None, None) == reference


def test_a_selection_on_the_reference_is_one_swatch_over_the_whole_photo():
    assert tinct_plugin.swatches_to_send(None, (10, 8), (30, 20)) is None
    assert tinct_plugin.swatches_to_send((2, 3, 4, 2), (10, 8), (30, 20)) == [[2, 3, 6, 5, 0, 0, 30, 20]]
    assert tinct_plugin.swatches_to_send((-5, 6, 40, 9), (10, 8), (30, 20)) == [[0, 6, 10, 8, 0, 0, 30, 20]]
    with pytest.raises(tinct_plugin.ColorizeError, match="does not touch the reference layer"):
        tinct_plugin.swatches_to_send((10, 0, 5, 5), (10, 8), (30, 20))


HELLO = {"features": ["reference", "partial"], "limits": {"max_pixels": 100}}


def test_check_guidance_needs_the_feature_and_a_reference_within_the_limit():
    tinct_plugin.check_guidance(HELLO, {"reference_width": 10, "reference_height": 10})
    tinct_plugin.check_guidance(HELLO, {"palette": [[1, 2, 3]]})
    with pytest.raises(tinct_plugin.ColorizeError, match="older than colour from a reference"):
        tinct_plugin.check_guidance({"features": ["partial"]}, {"palette": [[1, 2, 3]]})
    with pytest.raises(tinct_plugin.ColorizeError, match="0.000101 megapixels; this Tinct daemon accepts at most"):
        tinct_plugin.check_guidance(HELLO, {"reference_width": 101, "reference_height": 1})


class StandInClient:
    """What tinct_plugin.colorize uses of tinct_client.Client: hello() (kept as info) and colorize."""

    def __init__(self, hello):
        self.info, self.hellos, self.sent = None, 0, None
        self._hello = hello

    def hello(self):
        self.hellos += 1
        self.info = self._hello
        return self.info

    def colorize(self, **request):
        self.sent = request
        return {"ok": True}


def test_colorize_checks_guidance_against_the_clients_hello_asking_once():
    client = StandInClient(HELLO)
    tinct_plugin.colorize(client, None, width=1)
    assert client.hellos == 0 and client.sent == {"guidance": None, "width": 1}   # nothing to check
    for _ in range(2):
        tinct_plugin.colorize(client, {"palette": [[1, 2, 3]]}, width=1)
    assert client.hellos == 1 and client.sent == {"guidance": {"palette": [[1, 2, 3]]}, "width": 1}
    old = StandInClient({"features": []})
    with pytest.raises(tinct_plugin.ColorizeError, match="older"):
        tinct_plugin.colorize(old, {"palette": [[1, 2, 3]]}, width=1)
    assert old.sent is None


def test_a_real_tinctd_takes_a_reference_layer_and_its_colours(tinctd, tmp_path):
    """Through tinct_plugin.colorize and the real client: a grey ramp without strokes takes the
    optimization engine's colours from a blue reference, which tinctd's own hello allows."""
    size = 48
    grey = bytes(v for v in range(size) for _ in range(3)) * size          # RGB u8, a horizontal ramp
    blue = bytes((40, 60, 200, 255)) * (size * size)                       # RGBA u8
    daemon = tinctd(tmp_path)
    try:
        with daemon.client(retries=0) as client:
            fields = tinct_plugin.reference_fields("Blue", size, size, "RGBA", "u8", lambda: blue)
            reply = tinct_plugin.colorize(client, tinct_plugin.guidance_fields(fields, None), width=size,
                                          height=size, layout="RGB", sample="u8", pixels=grey,
                                          hints=tinct_plugin.hints_to_send("optimization", None, False, None, "",
                                                                           referenced=True))
    finally:
        assert daemon.stop() == 0
    pixels = reply["pixels"]
    red, blue_mean = sum(pixels[0::3]) / size ** 2, sum(pixels[2::3]) / size ** 2
    assert blue_mean > red + 20, f"the result is not blue (mean red {red:.1f}, blue {blue_mean:.1f})"
