"""A stand-in for the part of GIMP 3's Python API that tinct-colorize.py uses (gi.repository Gimp,
Gegl, GLib, GObject), for tests/test_gimp_glue.py: it records what the plug-in does to GIMP and
fails the call a test names, the way GIMP 3.0.4 fails (libgimp answers False and keeps the
reason as the PDB's last error).  tests/test_gimp.py runs the plug-in in a real GIMP.
"""

import itertools
import types


class Log(list):
    """What the plug-in did to GIMP, in order.  `faults` maps a call (its name, or its whole entry
    such as ("remove_layer", "Colorized copy")) to how it fails the next time it is made:
    "refuses" as GIMP does (answers False, the reason in the PDB's last error) or "raises"."""

    def __init__(self):
        super().__init__()
        self.faults, self.last_error = {}, "success"

    def call(self, name, *detail):
        """Records a call; False when GIMP refuses it."""
        self.append((name, *detail))
        how = self.faults.pop((name, *detail), None) or self.faults.pop(name, None)
        if how == "raises":
            raise RuntimeError(f"{name} broke")
        if how == "refuses":
            self.last_error = f"GIMP refused {name}"
        return how is None


class Layer:
    """Gimp.Layer: pixels kept in the one Babl format the plug-in reads or writes them in.
    Like GIMP's, a layer removed from its image or deleted is gone for good."""

    tattoos = itertools.count(1)

    def __init__(self, log, name, width, height, babl=None, pixels=None):
        self.log, self.name, self.width, self.height = log, name, width, height
        self.babl, self.pixels, self.gone = babl, pixels, False
        self.tattoo, self.offsets, self.visible, self.parasites = next(Layer.tattoos), (0, 0), True, {}

    @classmethod
    def new(cls, image, name, width, height, kind, opacity, mode):
        # GIMP makes a layer of the image's own base type whatever `kind` says (seen in 3.0.4)
        assert image.base == "rgb", "a colour layer made in a grayscale image would be grey"
        if not image.log.call("Layer.new", name):
            raise TypeError("constructor returned NULL")  # what PyGObject raises
        layer = cls(image.log, name, width, height)
        layer.image = image
        image.made.append(layer)
        return layer

    def delete(self):
        """Only for a layer never put into its image (GIMP refuses the others)."""
        assert not self.gone and self not in self.image.layers
        self.gone = True
        return True

    def get_name(self):
        return self.name

    def set_name(self, name):
        if not self.log.call("set_name", self.name, name):
            return False
        self.name = name
        return True

    def get_tattoo(self):
        return self.tattoo

    def get_width(self):
        return self.width

    def get_height(self):
        return self.height

    def get_offsets(self):
        return (True, *self.offsets)

    def set_offsets(self, x, y):
        if not self.log.call("set_offsets", self.name):
            return False
        self.offsets = (x, y)
        return True

    def has_alpha(self):
        return self.babl is not None and self.babl.split()[0].endswith("A")

    def is_gray(self):
        return self.babl is not None and self.babl.startswith("Y'")

    def is_group(self):
        return False

    def get_parent(self):
        return None

    def get_parasite(self, name):
        return self.parasites.get(name)

    def attach_parasite(self, parasite):
        if not self.log.call("attach_parasite", self.name):
            return False
        self.parasites[parasite.name] = parasite
        return True

    def get_visible(self):
        return self.visible

    def set_visible(self, visible):
        if not self.log.call("set_visible", self.name, visible):
            return False
        self.visible = visible
        return True

    def fill(self, kind):
        if not self.log.call("fill", self.name):
            return False
        self.babl, self.pixels = "R'G'B'A u8", bytes(self.width * self.height * 4)
        return True

    def get_buffer(self):
        return Buffer(self)

    def get_image(self):
        return self.image


class Buffer:
    def __init__(self, layer):
        self.layer = layer

    def get(self, rect, scale, babl, abyss):
        layer = self.layer
        assert (rect.x, rect.y, rect.width, rect.height, babl) == (0, 0, layer.width, layer.height, layer.babl), \
            "this stand-in only reads a whole layer in its own format"
        return layer.pixels

    def set(self, rect, babl, data):  # returns nothing in Gegl; can only raise
        self.layer.log.call("write_pixels", self.layer.name)
        self.layer.babl, self.layer.pixels = babl, bytes(data)

    def flush(self):
        pass


class Image:
    """Gimp.Image: an 8-bit RGB or grayscale image whose layers are listed top first."""

    ids = itertools.count(1)

    def __init__(self, log, layers, base="rgb"):
        self.log, self.layers, self.selected, self.base, self.made = log, list(layers), [layers[-1]], base, []
        self.id, self.selection = next(Image.ids), None
        for layer in layers:
            layer.image = self

    def get_id(self):
        return self.id

    def get_precision(self):
        return types.SimpleNamespace(value_nick="u8-non-linear")

    def get_base_type(self):
        return self.base

    def _convert(self, call, base):
        if self.base == base or not self.log.call(call):
            return False
        self.base = base
        return True

    def convert_rgb(self):
        return self._convert("convert_rgb", "rgb")

    def convert_grayscale(self):
        return self._convert("convert_grayscale", "gray")

    def get_layers(self):
        return list(self.layers)

    def get_layer_by_tattoo(self, tattoo):
        return next((layer for layer in self.layers if layer.tattoo == tattoo), None)

    def get_layer_by_name(self, name):
        return next((layer for layer in self.layers if layer.name == name), None)

    def get_item_position(self, layer):
        return self.layers.index(layer)

    def insert_layer(self, layer, parent, position):
        assert parent is None and not layer.gone and layer not in self.layers
        if not self.log.call("insert_layer", layer.name):
            return False
        name, number = layer.name, 0
        while layer.name in {other.name for other in self.layers}:  # names are unique in a GIMP image
            number += 1
            layer.name = f"{name} #{number}"
        self.layers.insert(position, layer)
        self.selected = [layer]  # as GIMP does
        return True

    def remove_layer(self, layer):
        assert layer in self.layers
        if not self.log.call("remove_layer", layer.name):
            return False
        self.layers.remove(layer)
        layer.gone = True
        if layer in self.selected:
            self.selected = [self.layers[0]]  # GIMP picks a neighbour
        return True

    def get_selected_layers(self):
        return list(self.selected)

    def set_selected_layers(self, layers):
        assert layers and all(layer in self.layers for layer in layers)
        if not self.log.call("set_selected_layers", tuple(layer.name for layer in layers)):
            return False
        self.selected = list(layers)
        return True

    def undo_group_start(self):
        self.log.append(("undo_group_start",))

    def undo_group_end(self):
        self.log.append(("undo_group_end",))


class GLibError:
    def __init__(self, message=None):
        self.message = message

    @classmethod
    def new_literal(cls, domain, message, code):
        return cls(message)


def parasite(name, flags, data):
    return types.SimpleNamespace(name=name, get_data=lambda: data)


def gi_module(log):
    """The gi package as the plug-in imports it; GIMP's progress calls go into `log`."""
    ns = types.SimpleNamespace
    gimp = ns(
        ImageType=ns(RGB_IMAGE="RGB", RGBA_IMAGE="RGBA"), ImageBaseType=ns(RGB="rgb", GRAY="gray"),
        PARASITE_PERSISTENT=1, PARASITE_UNDOABLE=2, LayerMode=ns(NORMAL="normal"),
        FillType=ns(TRANSPARENT="transparent"),
        PlugIn=type("PlugIn", (), {"__gtype__": "GimpPlugIn"}), main=lambda gtype, argv: None,
        Layer=Layer, Parasite=ns(new=parasite), get_pdb=lambda: ns(get_last_error=lambda: log.last_error),
        # an image's selection: None, or the bounding box (x1, y1, x2, y2) a test gives its `selection`
        Selection=ns(is_empty=lambda image: image.selection is None,
                     bounds=lambda image: (True, True, *image.selection)), displays_flush=lambda: None,
        # the foreground and background colours as a Gegl.Color gives them: linear light
        context_get_foreground=lambda: ns(get_rgba=lambda: (1.0, 0.0, 0.0, 1.0)),
        context_get_background=lambda: ns(get_rgba=lambda: (0.0, 0.0, 0.2158, 1.0)),
        progress_init=lambda message: log.append(("progress_init", message)),
        progress_update=lambda fraction: log.append(("progress_update", fraction)),
        progress_end=lambda: log.append(("progress_end",)),
        PDBStatusType=ns(SUCCESS="success", EXECUTION_ERROR="execution-error", CANCEL="cancel"),
        RunMode=ns(INTERACTIVE="interactive", NONINTERACTIVE="noninteractive"))
    gegl = ns(Rectangle=ns(new=lambda x, y, width, height: ns(x=x, y=y, width=width, height=height)),
              AbyssPolicy=ns(NONE="none"))
    repository = types.ModuleType("gi.repository")
    repository.Gimp, repository.Gegl = gimp, gegl
    repository.GLib = ns(Error=GLibError, quark_from_string=lambda name: name)
    repository.GObject = ns(ParamFlags=ns(READWRITE=3))
    gi = types.ModuleType("gi")
    gi.require_version, gi.repository = (lambda namespace, version: None), repository
    return gi
