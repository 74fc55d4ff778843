"""The Krita plugin without Krita: its decisions (job.py, formats.py), its Live-mode timing and
request superseding (live.py, also against a real tinctd), and its document code (document.py)
run against a small stand-in of Krita's Document and Node classes (tests/fakes/krita.py).
tests/test_krita.py runs the same code inside a real Krita.
"""

import importlib
import struct
import sys
import threading
import time

import numpy as np
import pytest
from tinct_krita import document, formats, job, live, tinct_plugin

from daemon_fixture import free_port, tinct_client
from fakes import krita as fake_krita
from fakes.krita import ORIGIN, Document, Selection  # also makes tinct_krita importable, as installed

SRGB = formats.SRGB_PROFILE
LINEAR = "sRGB-elle-V2-g10.icc"


def photo_doc(space=formats.Space("RGBA", "U8", SRGB)):
    """An 8x6 canvas; the photo, 6x4 at (4, 1), hangs off the right edge; a stroke on its hints layer."""
    doc = Document(8, 6, space)
    photo = doc.add("photo")
    rng = np.random.default_rng(1)
    photo.rgba[1 + ORIGIN:5 + ORIGIN, 4 + ORIGIN:10 + ORIGIN, :3] = rng.integers(0, 256, (4, 6, 1)) / 255
    photo.rgba[1 + ORIGIN:5 + ORIGIN, 4 + ORIGIN:10 + ORIGIN, 3] = 1
    hints = doc.add(job.HINTS_NAME, space=formats.Space("RGBA", "U8", SRGB))
    hints.fill(5, 2, 2, 1, (200, 100, 50, 255))
    doc.add("Top")
    doc.setActiveNode(photo)
    return doc, photo, hints


def reply_for(kwargs, value=0.5):
    """What tinctd would answer: the request's format, every sample `value` (alpha kept)."""
    fmt = formats.WireFormat(None, kwargs["layout"], kwargs["sample"])
    count = kwargs["width"] * kwargs["height"] * 4
    code = {"u8": "B", "u16": "H", "f32": "f"}[kwargs["sample"]]
    scale = {"u8": 255, "u16": 65535, "f32": 1}[kwargs["sample"]]
    sample = round(value * scale) if scale > 1 else value
    pixels = struct.pack(f"={count}{code}", *[sample] * count)
    assert len(pixels) == fmt.size(kwargs["width"], kwargs["height"])
    return {"width": kwargs["width"], "height": kwargs["height"], "layout": kwargs["layout"],
            "sample": kwargs["sample"], "pixels": pixels, "engine": kwargs["engine"]}


SETTINGS = job.Settings()


# -- document.py against the stand-in ------------------------------------------------------------
def test_prepare_sends_the_photos_pixels_on_the_canvas_in_kritas_own_order():
    doc, photo, hints = photo_doc()
    kwargs, target = document.prepare(doc, SETTINGS)
    assert target.rect == (4, 1, 4, 4)   # the photo's pixels that lie on the 8x6 canvas
    assert (kwargs["width"], kwargs["height"], kwargs["layout"], kwargs["sample"]) == (4, 4, "BGRA", "u8")
    assert kwargs["pixels"] == photo.pixelData(4, 1, 4, 4)
    assert kwargs["hints"] == hints.pixelData(4, 1, 4, 4)
    assert kwargs["hints"][20:24] == bytes((50, 100, 200, 255))   # the stroke at (1, 1), BGRA
    assert (kwargs["hints_layout"], kwargs["hints_sample"]) == ("BGRA", "u8")
    assert kwargs["engine"] == "optimization" and kwargs["options"] == {"quality": "final"}
    assert kwargs["selection"] is None
    assert target.source == photo.uid and target.space == formats.Space("RGBA", "U8", SRGB)


@pytest.mark.parametrize("active", ["photo", job.HINTS_NAME, job.RESULT_NAME])
def test_any_layer_of_the_photos_stack_means_the_photo(active):
    doc, photo, hints = photo_doc()
    kwargs, target = document.prepare(doc, SETTINGS)
    document.apply(doc, target, reply_for(kwargs))
    doc.setActiveNode(next(n for n in doc.root.children if n.name() == active))
    assert document.prepare(doc, SETTINGS)[1].source == photo.uid


def test_prepare_refuses_a_layer_that_is_not_a_paint_layer():
    doc, photo, hints = photo_doc()
    group = doc.add("Folder", kind="grouplayer")
    doc.setActiveNode(group)
    with pytest.raises(job.ColorizeError, match='"Folder" is a group layer'):
        document.prepare(doc, SETTINGS)
    assert document.hints_layer(doc) is None  # watching stays silent about it


def test_without_strokes_only_the_learned_engine_runs():
    doc, photo, hints = photo_doc()
    hints.remove()
    with pytest.raises(job.ColorizeError, match=r"paint a few strokes on a hints layer \(Filter → Add Colorize"):
        document.prepare(doc, SETTINGS)
    kwargs, _ = document.prepare(doc, job.Settings(engine="learned"))
    assert "hints" not in kwargs and kwargs["options"] == {"quality": "final", "vibrancy": 0.65}
    assert document.read_hints(doc) is None


def test_a_partial_selection_is_sent_over_the_photos_rectangle():
    doc, photo, hints = photo_doc()
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 5:7] = 255
    doc._selection = Selection(mask)
    kwargs, _ = document.prepare(doc, SETTINGS)
    assert kwargs["selection"] == mask[1:5, 4:8].tobytes()
    doc._selection = Selection(np.full((6, 8), 255, np.uint8))   # everything: nothing to send
    assert document.prepare(doc, SETTINGS)[0]["selection"] is None
    doc._selection = Selection(np.pad(np.full((6, 3), 255, np.uint8), ((0, 0), (0, 5))))  # misses the photo
    with pytest.raises(job.ColorizeError, match="selection does not touch this layer"):
        document.prepare(doc, SETTINGS)


def test_apply_puts_the_result_directly_above_the_photo_and_replaces_it_on_a_rerun():
    doc, photo, hints = photo_doc()
    kwargs, target = document.prepare(doc, SETTINGS)
    first = document.apply(doc, target, reply_for(kwargs, 0.2))
    assert doc.names() == ["photo", job.RESULT_NAME, job.HINTS_NAME, "Top"]
    assert document.rect_of(first.bounds()) == target.rect
    assert first.pixelData(*target.rect) == reply_for(kwargs, 0.2)["pixels"]
    first.setVisible(False)
    first.setOpacity(128)
    first.setBlendingMode("multiply")
    second = document.apply(doc, target, reply_for(kwargs, 0.7))
    assert doc.names() == ["photo", job.RESULT_NAME, job.HINTS_NAME, "Top"] and second.uid != first.uid
    assert (second.visible(), second.opacity(), second.blendingMode()) == (False, 128, "multiply")
    assert second.pixelData(*target.rect) == reply_for(kwargs, 0.7)["pixels"]


def test_live_mode_writes_into_the_result_layer_in_place():
    doc, photo, hints = photo_doc()
    kwargs, target = document.prepare(doc, SETTINGS, live=True)
    assert kwargs["options"] == {"quality": "preview"}
    first = document.apply(doc, target, reply_for(kwargs, 0.2), in_place=True)  # none yet: a new one
    again = document.apply(doc, target, reply_for(kwargs, 0.6), in_place=True)
    assert again.uid == first.uid and doc.names().count(job.RESULT_NAME) == 1
    assert again.pixelData(*target.rect) == reply_for(kwargs, 0.6)["pixels"]
    first.setColorSpace("RGBA", "U16", SRGB)   # no longer the result's space: replaced after all
    third = document.apply(doc, target, reply_for(kwargs, 0.4), in_place=True)
    assert third.uid != first.uid and third.colorDepth() == "U8" and doc.names().count(job.RESULT_NAME) == 1


def test_a_bad_answer_or_a_removed_photo_changes_nothing():
    doc, photo, hints = photo_doc()
    kwargs, target = document.prepare(doc, SETTINGS)
    before = doc.state()
    short = dict(reply_for(kwargs), pixels=b"\0" * 10)
    with pytest.raises(formats.FormatError, match="update the daemon and the plugin together"):
        document.apply(doc, target, short)
    with pytest.raises(formats.FormatError):
        document.apply(doc, target, dict(reply_for(kwargs), layout="RGBA"))
    assert doc.state() == before
    photo.remove()
    with pytest.raises(job.ColorizeError, match="photo layer was removed"):
        document.apply(doc, target, reply_for(kwargs))
    assert job.RESULT_NAME not in doc.names()


def test_a_half_float_linear_photo_travels_as_srgb_f32_and_its_result_is_half_float_again():
    space = formats.Space("RGBA", "F16", LINEAR)
    doc, photo, hints = photo_doc(space)
    kwargs, target = document.prepare(doc, SETTINGS)
    assert (kwargs["layout"], kwargs["sample"]) == ("RGBA", "f32")
    sent = np.frombuffer(kwargs["pixels"], np.float32).reshape(4, 4, 4)
    assert np.allclose(sent, photo.rgba[1 + ORIGIN:5 + ORIGIN, 4 + ORIGIN:8 + ORIGIN], atol=1e-3)
    assert photo.space == space   # converted on a copy
    layer = document.apply(doc, target, reply_for(kwargs, 0.25))
    assert document.space_of(layer) == space
    assert np.allclose(np.frombuffer(layer.pixelData(*target.rect), np.float16), 0.25)
    again = document.apply(doc, target, reply_for(kwargs, 0.75), in_place=True)
    assert again.uid == layer.uid and np.allclose(np.frombuffer(again.pixelData(*target.rect), np.float16), 0.75)


def test_a_sixteen_bit_photo_stays_sixteen_bits():
    doc, photo, hints = photo_doc(formats.Space("RGBA", "U16", SRGB))
    kwargs, target = document.prepare(doc, SETTINGS)
    assert (kwargs["layout"], kwargs["sample"]) == ("BGRA", "u16") and kwargs["pixels"] == photo.pixelData(4, 1, 4, 4)
    assert document.apply(doc, target, reply_for(kwargs)).colorDepth() == "U16"


def test_add_hints_layer_goes_above_the_photos_stack_in_rgb_at_the_photos_depth():
    doc, photo, hints = photo_doc(formats.Space("GRAYA", "U16", "Gray-D50-elle-V2-srgbtrc.icc"))
    hints.remove()
    kwargs, target = document.prepare(doc, job.Settings(engine="learned"))
    document.apply(doc, target, reply_for(kwargs))
    layer = document.add_hints_layer(doc)
    assert doc.names() == ["photo", job.RESULT_NAME, job.HINTS_NAME, "Top"]
    assert document.space_of(layer) == formats.Space("RGBA", "U16", SRGB)
    assert document.add_hints_layer(doc).uid == layer.uid   # found, not made twice
    assert document.hints_layer(doc).uid == layer.uid


def test_suggestions_use_the_hints_from_before_the_stroke():
    doc, photo, hints = photo_doc()
    before = document.read_hints(doc)
    hints.fill(4, 3, 3, 1, (20, 200, 20, 255))
    after = document.read_hints(doc)
    point = job.changed_point(before.pixels, after.pixels, after.rect[2], after.fmt.bytes_per_pixel)
    assert point == (1, 2)   # photo coordinates: x 0..2 changed on row 2
    kwargs = document.suggestion_request(doc, before, point)
    assert (kwargs["x"], kwargs["y"], kwargs["k"]) == (1, 2, job.SUGGESTIONS)
    assert kwargs["hints"] == before.pixels != after.pixels and kwargs["pixels"] == photo.pixelData(4, 1, 4, 4)


def reference_doc(space=formats.Space("RGBA", "U8", SRGB)):
    """Another open document: "Sky", blue, in a group above "Ground"; 5x3 of it lies on the 5x5 canvas."""
    doc = Document(5, 5, space, file="/photos/sky.kra")
    doc.add("Ground")
    group = doc.add("Group", "grouplayer")
    sky = doc.createNode("Sky", "paintlayer")
    group.addChildNode(sky, None)
    sky.fill(0, 2, 7, 3, (40, 60, 200, 255))
    return doc, sky


def test_the_reference_picker_lists_every_paint_layer_of_every_document_top_first():
    doc, photo, hints = photo_doc()
    other, sky = reference_doc()
    layers = document.reference_layers([doc, other])
    root, other_root = doc.rootNode().uid, other.rootNode().uid
    assert layers == [((root, doc.root.children[2].uid), "Untitled › Top"),
                      ((root, hints.uid), "Untitled › Colorize hints"), ((root, photo.uid), "Untitled › photo"),
                      ((other_root, sky.uid), "sky.kra › Sky"),
                      ((other_root, other.root.children[0].uid), "sky.kra › Ground")]


def test_a_reference_of_another_document_travels_with_the_request():
    """Its pixels on its own canvas, in the format Krita keeps them; the optimization engine then runs
    without strokes; the palette waits for the learned engine."""
    doc, photo, hints = photo_doc()
    hints.fill(5, 2, 2, 1, (0, 0, 0, 0))   # no strokes
    other, sky = reference_doc()
    settings = job.Settings(reference=(other.rootNode().uid, sky.uid), palette=job.FOREGROUND_BACKGROUND)
    kwargs, _ = document.prepare(doc, settings, documents=[doc, other], colours=[(255, 0, 0), (0, 0, 255)])
    assert "hints" not in kwargs
    assert kwargs["guidance"] == {"reference": sky.pixelData(0, 2, 5, 3), "reference_width": 5, "reference_height": 3,
                                  "reference_layout": "BGRA", "reference_sample": "u8"}
    assert kwargs["guidance"]["reference"][:4] == bytes((200, 60, 40, 255))
    learned = job.Settings("learned", reference=settings.reference, palette=job.FOREGROUND_BACKGROUND)
    guidance = document.prepare(doc, learned, documents=[doc, other], colours=[(255, 0, 0), (0, 0, 255)])[0]["guidance"]
    assert guidance["palette"] == [[255, 0, 0], [0, 0, 255]] and guidance["reference_width"] == 5


def test_a_selection_in_the_references_document_is_its_swatch():
    """Selected in the reference's document: the photo (4x4 on the canvas) takes colour from that
    part of the reference only, in the reference layer's pixels (its rectangle starts at y 2); a
    selection in the photo's own document only limits what changes."""
    doc, photo, hints = photo_doc()
    other, sky = reference_doc()
    mask = np.zeros((5, 5), np.uint8)
    mask[3:5, 1:3] = 255
    other._selection = Selection(mask)
    settings = job.Settings(reference=(other.rootNode().uid, sky.uid))
    guidance = document.prepare(doc, settings, documents=[doc, other])[0]["guidance"]
    assert guidance["swatches"] == [[1, 1, 3, 3, 0, 0, 4, 4]]
    doc._selection = Selection(np.full((6, 8), 255, np.uint8))
    photo_sky = doc.createNode("Sky", "paintlayer")
    doc.root.addChildNode(photo_sky, None)
    photo_sky.fill(0, 0, 8, 6, (40, 60, 200, 255))
    guidance = document.prepare(doc, job.Settings(reference=(doc.rootNode().uid, photo_sky.uid)), documents=[doc])
    assert "swatches" not in guidance[0]["guidance"]
    mask[:] = 0
    mask[0:2, :] = 255   # above the reference layer's pixels
    with pytest.raises(job.ColorizeError, match="does not touch the reference layer"):
        document.prepare(doc, settings, documents=[doc, other])


def test_a_palette_alone_and_no_guidance_at_all():
    doc, _, _ = photo_doc()
    colours = [(255, 0, 0), (255, 0, 0)]
    assert document.prepare(doc, job.Settings("learned", palette="Pastels"), colours=colours)[0]["guidance"] == \
        {"palette": [[255, 0, 0]]}
    assert document.prepare(doc, job.Settings("learned", palette=""), colours=colours)[0]["guidance"] is None
    with pytest.raises(job.ColorizeError, match='The palette "Pastels" has no colours'):
        document.prepare(doc, job.Settings("learned", palette="Pastels"), colours=[])
    assert document.prepare(doc, SETTINGS, colours=colours)[0]["guidance"] is None


def test_a_gone_or_grey_reference_is_refused_before_anything_is_sent():
    doc, _, _ = photo_doc()
    other, sky = reference_doc()
    with pytest.raises(job.ColorizeError, match="The reference layer is gone"):
        document.prepare(doc, job.Settings(reference=(other.rootNode().uid, sky.uid)), documents=[doc])
    grey, grey_sky = reference_doc(formats.Space("GRAYA", "U8", "Gray-D50-elle-V2-srgbtrc.icc"))
    with pytest.raises(job.ColorizeError, match='reference layer "Sky" is grey'):
        document.prepare(doc, job.Settings(reference=(grey.rootNode().uid, grey_sky.uid)), documents=[grey])
    empty = grey.createNode("Empty", "paintlayer")
    grey.root.addChildNode(empty, None)
    empty.setColorSpace("RGBA", "U8", SRGB)
    with pytest.raises(job.ColorizeError, match='reference layer "Empty" is empty'):
        document.prepare(doc, job.Settings(reference=(grey.rootNode().uid, empty.uid)), documents=[grey])


# -- job.py and formats.py -------------------------------------------------------------------------
def test_vibrancy_is_sent_as_boldness_to_the_learned_engine_only():
    assert job.engine_options(job.Settings(engine="learned")) == {"quality": "final", "vibrancy": 0.65}
    assert job.engine_options(job.Settings(engine="learned", vibrancy=100), live=True) == \
        {"quality": "preview", "vibrancy": 1.0}
    assert job.engine_options(job.Settings(engine="learned", vibrancy=0)) == {"quality": "final", "vibrancy": 0.0}
    assert job.engine_options(job.Settings(engine="optimization", vibrancy=30)) == {"quality": "final"}


def test_default_vibrancy_is_tinctds_own():
    from tinct.engines.learned import engine as learned

    assert job.DEFAULT_VIBRANCY / 100 == pytest.approx(learned.DEFAULT_VIBRANCY, abs=0.005)


@pytest.mark.parametrize("engine, vibrancy, expected", [
    ("learned", "40", job.Settings("learned", 40, vibrancy_chosen=True)),
    ("optimization", "250", job.Settings("optimization", 100, vibrancy_chosen=True)),
    ("", "", job.Settings()), ("pix2pix", "lots", job.Settings()), (None, None, job.Settings()),
])
def test_saved_settings_survive_an_old_or_hand_edited_kritarc(engine, vibrancy, expected):
    assert job.saved_settings(engine, vibrancy) == expected


def test_the_palette_choice_is_saved_by_name():
    assert job.saved_settings("learned", "40", job.FOREGROUND_BACKGROUND).palette == job.FOREGROUND_BACKGROUND
    assert job.saved_settings("learned", "40", "Pastels").palette == "Pastels"
    assert job.saved_settings("learned", "40").palette == "" == job.saved_settings(None, None, None).palette
    assert job.palette_name(job.Settings(palette="Pastels")) == 'palette "Pastels"'
    assert job.palette_name(job.Settings(palette=job.FOREGROUND_BACKGROUND)) == \
        "palette of the foreground and background colours"


def test_the_default_vibrancy_follows_tinctds_hello_until_the_user_chooses_one():
    settings = job.saved_settings("learned", "")
    assert not job.advertised(settings, None) and settings.vibrancy == job.DEFAULT_VIBRANCY
    assert job.advertised(settings, {"defaults": {"vibrancy": 0.4}}) and settings.vibrancy == 40
    assert not job.advertised(settings, {"defaults": {"vibrancy": 0.4}})  # no change the second time
    assert job.advertised(settings, {"defaults": {"vibrancy": "loud"}})  # nonsense: the plugin's own fallback
    assert settings.vibrancy == job.DEFAULT_VIBRANCY
    chosen = job.saved_settings("learned", "80")
    assert not job.advertised(chosen, {"defaults": {"vibrancy": 0.4}}) and chosen.vibrancy == 80


def test_the_runner_keeps_the_hello_its_clients_last_had():
    runner, log, clients = _runner()
    first = runner.submit("colorize", {}, document="photo", tag="t")
    _until(lambda: clients)
    clients[0].info = {"defaults": {"vibrancy": 0.5}}
    _release(clients, first)
    _until(lambda: not runner.running)
    assert runner.hello == {"defaults": {"vibrancy": 0.5}}


def test_the_runner_checks_guidance_against_the_clients_hello():
    """A colorize with a reference or palette asks tinctd's hello first (once per client); one that
    lacks the feature is refused before anything is sent, a request without guidance asks nothing."""
    runner, log, clients = _runner()
    asked = []

    def hello(client):
        asked.append(client)
        client.info = {"features": ["partial"]}
        return client.info

    first = runner.submit("colorize", {}, document="photo")
    _until(lambda: clients)
    clients[0].hello = lambda: hello(clients[0])
    _release(clients, first)
    _until(lambda: not runner.running)
    assert runner.poll()[0].error is None and asked == []
    runner.submit("colorize", {"guidance": {"palette": [[1, 2, 3]]}}, document="photo")
    _until(lambda: not runner.running and runner.finished)
    outcome = runner.poll()[0]
    assert asked == clients[:1] and isinstance(outcome.error, tinct_plugin.ColorizeError)
    assert "older than colour from a reference" in str(outcome.error)
    assert [entry[0] for entry in log] == ["colorize"]   # the second was never sent


def test_find_stack_walks_down_from_a_tinct_layer_to_the_photo():
    layers = [("bg", "paintlayer"), ("photo", "paintlayer"), (job.RESULT_NAME, "paintlayer"),
              (job.HINTS_NAME, "paintlayer"), ("Top", "paintlayer"), (job.RESULT_NAME, "paintlayer")]
    for active in (1, 2, 3):
        assert job.find_stack(layers, active) == job.Stack(1, hints=3, result=2)
    assert job.find_stack(layers, 1).top == 3
    assert job.find_stack(layers, 4) == job.Stack(4, result=5)
    with pytest.raises(job.ColorizeError, match="Select the photo layer"):
        job.find_stack([(job.HINTS_NAME, "paintlayer")], 0)


def test_layer_rect_and_contains():
    assert job.layer_rect((-3, 2, 10, 10), (0, 0, 5, 8)) == (0, 2, 5, 6)
    with pytest.raises(job.ColorizeError, match="no pixels on the canvas"):
        job.layer_rect((10, 10, 4, 4), (0, 0, 5, 5))
    assert job.contains((0, 0, 5, 5), (1, 1, 4, 4)) and job.contains((0, 0, 5, 5), (0, 0, 0, 0))
    assert not job.contains((0, 0, 5, 5), (1, 1, 5, 4))


def test_changed_point_lies_on_the_newest_stroke():
    width, height = 20, 12
    old = bytearray(width * height * 4)
    new = bytearray(old)
    for i in range(8):                      # a diagonal stroke from (2, 1) to (9, 8)
        x, y = 2 + i, 1 + i
        new[(y * width + x) * 4 + 3] = 255
    x, y = job.changed_point(bytes(old), bytes(new), width, 4)
    assert new[(y * width + x) * 4 + 3] == 255   # on the stroke (a bounding box's centre need not be)
    assert job.changed_point(bytes(old), bytes(old), width, 4) is None
    assert job.changed_point(None, bytes(new), width, 4) is None


def test_error_sentences():
    sentence = "The Tinct daemon is not running at tcp://127.0.0.1:1."
    assert job.error_sentence(tinct_client.TinctError("unavailable", sentence)) == sentence
    assert tinct_plugin.expected(job.ColorizeError("x")) and not tinct_plugin.expected(KeyError("pixels"))
    assert tinct_plugin.expected(formats.FormatError("x"))
    missing = ImportError("No module named 'zmq'", name="zmq")
    assert "apt install python3-zmq python3-msgpack" in job.error_sentence(missing)
    text = job.error_sentence(KeyError("pixels"))
    assert "unexpectedly (KeyError: 'pixels')" in text and "the image was not changed" in text


def test_the_real_clients_sentence_when_tinctd_is_not_running():
    with tinct_client.Client(f"tcp://127.0.0.1:{free_port()}", start_command=[], timeout=2) as client:
        with pytest.raises(tinct_client.TinctError) as caught:
            client.colorize(width=1, height=1, layout="BGRA", sample="u8", pixels=bytes(4))
    assert "is not running at" in job.error_sentence(caught.value)


@pytest.mark.parametrize("space, layout, sample, direct", [
    (("RGBA", "U8", SRGB), "BGRA", "u8", True),
    (("RGBA", "U16", SRGB), "BGRA", "u16", True),
    (("RGBA", "F32", SRGB), "RGBA", "f32", True),
    (("RGBA", "F16", SRGB), "RGBA", "f32", False),            # tinctd reads no half floats
    (("RGBA", "U8", LINEAR), "BGRA", "u8", False),            # not sRGB-encoded
    (("GRAYA", "U8", "Gray-D50-elle-V2-srgbtrc.icc"), "BGRA", "u8", False),
    (("CMYKA", "U16", "Chemical proof"), "BGRA", "u16", False),
])
def test_wire_format(space, layout, sample, direct):
    fmt = formats.wire_format(formats.Space(*space))
    assert (fmt.layout, fmt.sample) == (layout, sample)
    assert (fmt.space == formats.Space(*space)) == direct
    assert fmt.space.model == "RGBA" and (direct or fmt.space.profile == SRGB)


def test_result_space_and_unreadable_depths():
    assert formats.result_space(formats.Space("RGBA", "F16", LINEAR)) == formats.Space("RGBA", "F16", LINEAR)
    assert formats.result_space(formats.Space("GRAYA", "U16", "x")) == formats.Space("RGBA", "U16", SRGB)
    with pytest.raises(formats.FormatError, match="cannot read RGBA F64 layers"):
        formats.wire_format(formats.Space("RGBA", "F64", SRGB))


def test_has_paint_looks_at_alpha_only():
    fmt = formats.wire_format(formats.Space("RGBA", "U16", SRGB))
    assert not formats.has_paint(struct.pack("=8H", 9, 9, 9, 0, 65535, 1, 1, 0), fmt)
    assert formats.has_paint(struct.pack("=8H", 0, 0, 0, 0, 0, 0, 0, 256), fmt)   # alpha's high byte


# -- live.py: timing and superseding ---------------------------------------------------------------
def test_debounce_fires_once_after_the_last_touch():
    debounce = live.Debounce(0.3)
    assert not debounce.due(0.0)
    debounce.touch(1.0)
    debounce.touch(1.2)          # a touch meanwhile pushes it back
    assert not debounce.due(1.45)
    assert debounce.due(1.5)
    assert not debounce.due(1.6)  # once


def test_change_watch_waits_for_the_layer_to_be_still():
    watch = live.ChangeWatch(0.3)
    assert watch.see(0.0, "hints", b"a")       # new: its first look is the "before", no change
    assert not watch.due(0.5)
    assert not watch.see(0.6, "hints", b"b")   # painted
    assert not watch.see(0.7, "hints", b"c")   # still painting
    assert not watch.see(0.8, "hints", b"c") and not watch.due(0.8)
    assert watch.due(1.0)                      # 0.3 s after the last change
    assert not watch.see(1.1, "hints", b"c") and not watch.due(2.0)
    assert not watch.see(2.1, None, None)      # no hints layer (another image)
    assert watch.see(2.2, "hints", b"z") and not watch.due(3.0)   # back: a first look again
    watch.poke(3.0)                            # a setting changed
    assert watch.due(3.3)


class FakeClient:
    """Stands in for tinct_client.Client: colorize waits until the test releases its request id."""

    def __init__(self, client_id, log):
        self.client_id, self.log, self.closed = client_id, log, False
        self.release = {}
        self.info = None  # tinctd's hello, as a real client keeps it

    def colorize(self, **kwargs):
        self.log.append(("colorize", kwargs["request_id"], kwargs["document"]))
        if "partial" in kwargs:  # tinctd's quick answer comes first, when it is let out
            early = self.release.setdefault(kwargs["request_id"] + " partial", threading.Event())
            assert early.wait(10)
            kwargs["partial"]({"id": kwargs["request_id"], "quality": "live"})
        gate = self.release.setdefault(kwargs["request_id"], threading.Event())
        assert gate.wait(10)
        if kwargs.get("fail"):
            raise tinct_client.TinctError("internal", "it broke")
        return {"id": kwargs["request_id"]}

    def suggest(self, **kwargs):
        self.log.append(("suggest", kwargs["x"]))
        gate = self.release.setdefault(f"suggest {kwargs['x']}", threading.Event())
        assert gate.wait(10)
        return [(kwargs["x"], 2, 3)]

    def cancel(self, request_id):
        self.log.append(("cancel", request_id))
        self.release.setdefault(request_id, threading.Event()).set()

    def close(self):
        self.closed = True


def _runner():
    log, clients = [], []

    def make(client_id):
        clients.append(FakeClient(client_id, log))
        return clients[-1]

    return live.Runner(make), log, clients


def _until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _release(clients, request_id):
    _until(lambda: any(request_id in c.release for c in clients))
    next(c for c in clients if request_id in c.release).release[request_id].set()


def test_a_newer_live_request_cancels_the_running_one_and_goes_out_once_it_is_back():
    runner, log, clients = _runner()
    first = runner.submit("colorize", {}, document="photo", tag="first")
    _until(lambda: ("colorize", first, "photo") in log)
    # the first's cancel reaches tinctd only once the third is submitted: else the first may be back, and
    # the second sent, before the third comes
    submitted, cancel = threading.Event(), clients[0].cancel
    clients[0].cancel = lambda request_id: (submitted.wait(10), cancel(request_id))
    second = runner.submit("colorize", {}, document="photo", tag="second")
    third = runner.submit("colorize", {}, document="photo", tag="third")   # replaces the second, still waiting
    submitted.set()
    _until(lambda: ("cancel", first) in log)    # tinctd is told to stop the first
    _until(lambda: ("colorize", third, "photo") in log)
    assert log.index(("cancel", first)) < log.index(("colorize", third, "photo"))
    assert not [entry for entry in log if second in entry]   # never sent
    assert {c.client_id for c in clients} == {runner.client_id}
    assert runner.busy() and runner.poll() == []
    _release(clients, third)
    _until(lambda: not runner.running)
    outcomes = runner.poll()
    assert [(o.tag, o.result) for o in outcomes] == [("third", {"id": third})]   # the first's answer is dropped
    assert not runner.busy()


def test_cancel_is_repeated_until_the_request_stops():
    """A cancel that reaches tinctd before the request itself finds nothing; the runner asks again."""
    runner, log, clients = _runner()
    first = runner.submit("colorize", {}, document="photo", tag="first")
    _until(lambda: clients and first in clients[0].release)
    clients[0].cancel = lambda request_id: log.append(("cancel", request_id))   # tinctd did not know it yet
    runner.submit("colorize", {}, document="photo", tag="second")
    _until(lambda: log.count(("cancel", first)) >= 2)
    _release(clients, first)
    _until(lambda: len([entry for entry in log if entry[0] == "colorize"]) == 2)
    cancels = log.count(("cancel", first))
    time.sleep(3 * live.CANCEL_AGAIN)
    assert log.count(("cancel", first)) <= cancels + 1   # stops once the request is back


def test_an_answer_not_yet_polled_is_dropped_when_a_newer_request_comes():
    runner, log, clients = _runner()
    first = runner.submit("colorize", {}, document="photo", tag="first")
    _release(clients, first)
    _until(lambda: runner.busy() and not runner.running)   # answered, not polled
    second = runner.submit("colorize", {}, document="photo", tag="second")
    assert ("cancel", first) not in log   # nothing to cancel: it had finished
    _release(clients, second)
    _until(lambda: not runner.running)
    assert [o.tag for o in runner.poll()] == ["second"]
    assert len(clients) == 1   # the idle client was used again


def test_requests_without_a_document_and_other_documents_run_side_by_side():
    runner, log, clients = _runner()
    ids = [runner.submit("colorize", {}, document=None, tag="menu 1"),
           runner.submit("colorize", {}, document=None, tag="menu 2"),
           runner.submit("colorize", {}, document="other photo", tag="live")]
    _until(lambda: len(log) == 3)
    for request_id in ids:
        _release(clients, request_id)
    _until(lambda: not runner.running)
    assert sorted(o.tag for o in runner.poll()) == ["live", "menu 1", "menu 2"]
    assert not [entry for entry in log if entry[0] == "cancel"]


def test_failures_come_back_as_outcomes():
    runner, log, clients = _runner()
    broken = runner.submit("colorize", {"fail": True}, document="photo", tag="broken")
    _release(clients, broken)
    _until(lambda: not runner.running)
    (outcome,) = runner.poll()
    assert outcome.result is None and outcome.error.code == "internal"


def test_suggestions_supersede_each_other_without_a_cancel():
    runner, log, clients = _runner()
    runner.submit("suggest", {"x": 1}, document="suggest", tag="s1")
    _until(lambda: ("suggest", 1) in log)
    runner.submit("suggest", {"x": 2}, document="suggest", tag="s2")
    runner.submit("suggest", {"x": 3}, document="suggest", tag="s3")
    _release(clients, "suggest 1")
    _release(clients, "suggest 3")
    _until(lambda: not runner.running and not runner.waiting)
    assert [(o.tag, o.result) for o in runner.poll()] == [("s3", [(3, 2, 3)])]
    assert log == [("suggest", 1), ("suggest", 3)]


def test_a_partial_answer_comes_back_first_and_the_full_one_replaces_it():
    runner, log, clients = _runner()
    first = runner.submit("colorize", {}, document="photo", tag="live", partial=True)
    _release(clients, first + " partial")
    _until(lambda: runner.finished)
    (quick,) = runner.poll()
    assert quick.partial and quick.request_id == first and quick.result == {"id": first, "quality": "live"}
    assert runner.busy()  # the full answer is still to come
    _release(clients, first)
    _until(lambda: not runner.running)
    (full,) = runner.poll()
    assert not full.partial and full.result == {"id": first}

    second = runner.submit("colorize", {}, document="photo", tag="live", partial=True)
    _release(clients, second + " partial")
    _release(clients, second)
    _until(lambda: not runner.running)
    assert [(o.partial, o.request_id) for o in runner.poll()] == [(False, second)]  # unpolled partial: dropped


def test_a_partial_answer_is_dropped_when_a_newer_request_waits():
    runner, log, clients = _runner()
    first = runner.submit("colorize", {}, document="photo", tag="old", partial=True)
    _until(lambda: ("colorize", first, "photo") in log)
    newer = runner.submit("colorize", {}, document="photo", tag="new", partial=True)
    _until(lambda: ("cancel", first) in log)
    _release(clients, first + " partial")  # the old request's quick answer arrives after the newer stroke
    _release(clients, first)
    _release(clients, newer + " partial")
    _release(clients, newer)
    _until(lambda: not runner.running and not runner.waiting)
    time.sleep(0.05)
    seen = runner.poll()
    assert seen and all(o.request_id == newer for o in seen) and seen[-1].partial is False


def test_close_closes_idle_clients_now_and_running_ones_when_they_finish():
    runner, log, clients = _runner()
    done = runner.submit("colorize", {}, tag="done")
    _release(clients, done)
    _until(lambda: not runner.running)
    running = runner.submit("colorize", {}, document="photo", tag="running")
    _until(lambda: len(clients) == 1 and ("colorize", running, "photo") in log)
    runner.close()
    assert not clients[0].closed   # busy
    _release(clients, running)
    _until(lambda: clients[0].closed)


def _layer(size, seed):
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (size, size, 1), np.uint8)
    pixels = np.concatenate([grey, grey, grey, np.full((size, size, 1), 255, np.uint8)], axis=2)
    hints = np.zeros((size, size, 4), np.uint8)
    hints[size // 4:size // 4 + 4, size // 4:size // 2] = (40, 90, 210, 255)
    hints[size // 2:size // 2 + 4, size // 2:3 * size // 4] = (210, 120, 40, 255)
    return dict(width=size, height=size, layout="BGRA", sample="u8", pixels=pixels.tobytes(), hints=hints.tobytes(),
                engine="optimization", options={"quality": "final"})


def test_live_requests_against_a_real_tinctd_only_the_newest_is_answered(tinctd, tmp_path):
    """The first request is cancelled in tinctd while it runs, the second is replaced before it goes
    out, and only the third comes back from the runner."""
    daemon = tinctd(tmp_path)
    answers = {}

    class Recording(tinct_client.Client):
        def colorize(self, **kwargs):
            try:
                reply = super().colorize(**kwargs)
            except tinct_client.TinctError as exc:
                answers[kwargs["request_id"]] = exc.code
                raise
            answers[kwargs["request_id"]] = "ok"
            return reply

    runner = live.Runner(lambda client_id: Recording(daemon.endpoint, start_command=[], client_id=client_id))
    try:
        known = threading.Event()   # tinctd has the first request: the client's first status probe came back
        first = runner.submit("colorize", dict(_layer(1024, 1), progress=lambda done: known.set()), document="p")
        assert known.wait(60)
        second = runner.submit("colorize", _layer(1024, 2), document="p")
        third = runner.submit("colorize", _layer(64, 3), document="p")
        _until(lambda: not runner.running, timeout=120)
        outcomes = runner.poll()
        assert [o.request_id for o in outcomes] == [third] and outcomes[0].error is None
        assert outcomes[0].result["width"] == 64
        assert answers == {first: "cancelled", third: "ok"} and second not in answers
    finally:
        runner.close()
        daemon.stop()


# -- variations: the controller driven with stand-ins for Krita's application and PyQt5 ------------
VARIATIONS_HELLO = {"features": ["reference", "partial", "variations"]}


class VariationsClient:
    """Stands in for tinct_client.Client: answers a colorize with `variations` N layers, the k-th
    each sample (k + 1) / (N + 1), and records what was asked."""

    def __init__(self, hello, sent):
        self.info, self.hello_reply, self.sent = None, hello, sent

    def hello(self):
        self.info = self.hello_reply
        return self.info

    def colorize(self, **kwargs):
        self.sent.append(kwargs)
        count = kwargs.get("variations")
        if count is None:
            return reply_for(kwargs)
        return [reply_for(kwargs, (k + 1) / (count + 1)) for k in range(count)]

    def close(self):
        pass


@pytest.fixture
def glue(monkeypatch):
    """(the stand-in Krita application, a Controller on it, the requests its client was sent)."""
    app = fake_krita.Application()
    for name, module in fake_krita.glue_modules(app).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(fake_krita.QTimer, "later", [])
    monkeypatch.setattr(fake_krita.QMessageBox, "shown", [])
    module = importlib.import_module("tinct_krita.controller")
    sent = []
    try:
        control = module.Controller()
        control.runner = live.Runner(lambda client_id: VariationsClient(VARIATIONS_HELLO, sent))
        yield app, control, sent
    finally:
        sys.modules.pop("tinct_krita.controller", None)
        del sys.modules["tinct_krita"].controller


def _settle(control, condition):
    """Turn the controller's poll until `condition()` holds."""
    def done():
        control._tick()
        return condition()
    _until(done)


def test_the_docker_asks_for_four_variations_and_applies_the_one_clicked(glue):
    app, control, sent = glue
    doc, photo, hints = photo_doc()
    app.docs, app.active = [doc], doc
    control.set_settings(engine="learned", vibrancy=40)
    assert control.variations_unavailable() is None   # no hello yet: asked before the request goes out
    control.ask_variations()
    _settle(control, lambda: control.variations is not None)
    (request,) = sent
    assert (request["variations"], request["seed"], request["engine"]) == (4, 0, "learned")
    assert request["options"] == {"quality": "final", "vibrancy": 0.4}
    assert request["hints"] == hints.pixelData(4, 1, 4, 4)          # the photo's strokes go with them
    assert "4 variations" in control.status and not fake_krita.QMessageBox.shown

    thumbnails = control.variations.thumbnails(56)
    assert len(thumbnails) == 4 and len({pixels for _, _, pixels in thumbnails}) == 4
    assert thumbnails[2][:2] == (4, 4) and thumbnails[2][2][:3] == bytes([round(0.6 * 255)] * 3)

    before = doc.names()
    control.apply_variation(2)
    assert before == ["photo", job.HINTS_NAME, "Top"]
    assert doc.names() == ["photo", job.RESULT_NAME, job.HINTS_NAME, "Top"]   # as Colorize puts it
    layer = doc.root.children[1]
    assert layer.pixelData(4, 1, 4, 4) == control.variations.replies[2]["pixels"] == reply_for(request, 0.6)["pixels"]
    control.apply_variation(0)                                       # another click replaces it
    assert doc.names().count(job.RESULT_NAME) == 1
    assert doc.root.children[1].pixelData(4, 1, 4, 4) == reply_for(request, 0.2)["pixels"]
    assert "Variation 1 applied" in control.status

    control.ask_variations(more=True)                                # the next ones
    assert control.variations is None
    _settle(control, lambda: control.variations is not None)
    assert [r["seed"] for r in sent] == [0, 1] and sent[1]["variations"] == 4
    control.ask_variations()                                         # back to the first ones
    _settle(control, lambda: control.variations is not None)
    assert sent[2]["seed"] == 0


def test_the_variations_button_is_off_without_the_feature_or_the_learned_engine(glue):
    app, control, sent = glue
    doc, photo, hints = photo_doc()
    app.docs, app.active = [doc], doc
    control.set_settings(engine="learned")
    control.runner.hello = {"features": ["reference", "partial"]}   # an older tinctd's hello
    assert "older than variations" in control.variations_unavailable()
    control.runner = live.Runner(lambda client_id: VariationsClient({"features": ["partial"]}, sent))
    control.ask_variations()                                         # asked anyway: refused before sending
    _settle(control, lambda: fake_krita.QMessageBox.shown)
    assert "older than variations" in fake_krita.QMessageBox.shown[0] and not sent
    assert control.variations is None and doc.names() == ["photo", job.HINTS_NAME, "Top"]
    control.runner.hello = VARIATIONS_HELLO
    assert control.variations_unavailable() is None
    control.set_settings(engine="optimization")
    assert "Learned engine" in control.variations_unavailable()
    control.set_settings(engine="learned")
    control.set_reference(("doc", "layer"))
    assert "no reference" in control.variations_unavailable()


def test_thumbnails_of_every_layout_and_sample():
    """tinct_plugin.thumbnail: nearest pixels, fitted into the size, as RGBA u8 whatever tinctd answered."""
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[:, 20:] = (10, 20, 30, 255)
    rgba[:, :20] = (200, 100, 50, 128)
    cases = {("RGBA", "u8"): rgba, ("BGRA", "u8"): rgba[..., [2, 1, 0, 3]],
             ("RGBA", "u16"): rgba.astype(np.uint16) * 257, ("RGBA", "f32"): rgba.astype(np.float32) / 255,
             ("RGB", "u8"): rgba[..., :3]}
    for (layout, sample), pixels in cases.items():
        width, height, data = tinct_plugin.thumbnail({"width": 40, "height": 20, "layout": layout, "sample": sample,
                                                      "pixels": pixels.tobytes()}, 10)
        got = np.frombuffer(data, np.uint8).reshape(height, width, 4)
        assert (width, height) == (10, 5)
        expected = rgba[2::4, 2::4].copy()
        if layout == "RGB":
            expected[..., 3] = 255
        assert np.array_equal(got, expected), (layout, sample)
    grey = tinct_plugin.thumbnail({"width": 2, "height": 1, "layout": "GRAYA", "sample": "u8",
                                   "pixels": bytes((7, 255, 9, 0))}, 64)
    assert grey == (2, 1, bytes((7, 7, 7, 255, 9, 9, 9, 0)))         # never enlarged


def test_variations_are_refused_with_a_reference_before_anything_is_sent():
    sent = []
    client = VariationsClient(VARIATIONS_HELLO, sent)
    with pytest.raises(tinct_plugin.ColorizeError, match="no reference"):
        tinct_plugin.colorize(client, {"reference": b"x"}, variations=4, engine="learned", width=1)
    with pytest.raises(tinct_plugin.ColorizeError, match="Learned engine"):
        tinct_plugin.colorize(client, None, variations=4, engine="optimization", width=1)
    assert not sent
