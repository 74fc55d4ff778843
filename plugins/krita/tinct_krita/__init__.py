"""Tinct for Krita: interactive photo colorization through tinctd.

Krita imports this package when kritarc has [python] enable_tinct_krita=true (the installer
sets it).  Layout: formats.py, job.py and live.py decide (pure Python, unit-tested without
Krita); document.py reads and writes layers; controller.py, widgets.py and extension.py are
the Krita glue; tinct_plugin.py (what GIMP's plug-in decides alike), tinct_client.py and
tinct_shm.py are vendored from plugins/common by the installer.
"""

import os
import sys

# pyzmq/msgpack installed with pip by the installer when Krita's Python has no packages for them
_PRIVATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python%d.%d" % sys.version_info[:2])
if os.path.isdir(_PRIVATE) and _PRIVATE not in sys.path:
    sys.path.insert(0, _PRIVATE)

try:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita
except ImportError:  # imported outside Krita (unit tests): only the pure modules are used
    Krita = None

if Krita is not None:
    from .extension import TinctExtension
    from .widgets import DOCKER_ID, TinctDocker

    Krita.instance().addExtension(TinctExtension(Krita.instance()))
    Krita.instance().addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, TinctDocker))
