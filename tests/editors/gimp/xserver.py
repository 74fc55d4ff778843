"""A private X server for a GUI GIMP, and a user at its keyboard for the dialog test.

Xvfb runs on the host; GIMP in the chroot reaches it through the X server's abstract socket
(the chroot shares the host's network namespace, so no socket folder is mounted).  Windows
are found by title and keys typed with XTest, through ctypes: libX11 and libXtst are all the
host needs, no xdotool.  Without a window manager nothing gets the keyboard by itself, so the
window is given the input focus before each key.  DialogAnswers answers dialogs as they open;
KeyRequests types what the GIMP session asks for, when it asks.
"""
import ctypes
import os
import select
import shutil
import subprocess
import time

_LIBS = ("libX11.so.6", "libXtst.so.6")


def missing():
    """Why this host cannot run the dialog test, or None."""
    if shutil.which("Xvfb") is None:
        return "no Xvfb on the host (apt-get install xvfb; tests/editors/gimp/setup.sh does)"
    for name in _LIBS:
        try:
            ctypes.CDLL(name)
        except OSError:
            return f"no {name} on the host (apt-get install libx11-6 libxtst6; tests/editors/gimp/setup.sh does)"
    return None


class Xvfb:
    """An Xvfb on the first free display number; `display` is what DISPLAY must say."""

    def __init__(self, timeout=30):
        read, write = os.pipe()
        self.process = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp",
                                         "-screen", "0", "1280x1024x24"], pass_fds=(write,),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as announced:  # Xvfb writes its display number once it accepts clients
            number = announced.readline().strip() if select.select([announced], [], [], timeout)[0] else ""
        if not number:
            self.stop()
            raise RuntimeError(f"Xvfb did not start within {timeout} s")
        self.display = f":{number}"
        self.x11, xtst = (ctypes.CDLL(name) for name in _LIBS)
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self.x11.XDefaultRootWindow.restype = ctypes.c_ulong
        self.x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        window_p = ctypes.POINTER(ctypes.c_ulong)
        self.x11.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, window_p, window_p,
                                        ctypes.POINTER(window_p), ctypes.POINTER(ctypes.c_uint)]
        self.x11.XInternAtom.restype = ctypes.c_ulong
        self.x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.x11.XGetWindowProperty.argtypes = [
            ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long, ctypes.c_long, ctypes.c_int,
            ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_void_p)]
        self.x11.XFree.argtypes = [ctypes.c_void_p]
        self.x11.XSetInputFocus.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
        self.x11.XStringToKeysym.restype = ctypes.c_ulong
        self.x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
        self.x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        self.fake_key = xtst.XTestFakeKeyEvent
        # a window that vanishes between finding and focusing it is an X error, which by default
        # ends the whole process: ignore them, the caller sees the window gone and moves on
        self._ignore = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda *_: 0)
        self.x11.XSetErrorHandler(self._ignore)
        self.connection = self.x11.XOpenDisplay(self.display.encode())
        if not self.connection:
            self.stop()
            raise RuntimeError(f"cannot open the X display {self.display}")
        self._net_wm_name = self.x11.XInternAtom(self.connection, b"_NET_WM_NAME", False)

    def windows(self, title, ending=False):
        """The top-level windows called `title` (or, with `ending`, whose title ends with it)."""
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        self.x11.XQueryTree(self.connection, self.x11.XDefaultRootWindow(self.connection), ctypes.byref(root),
                            ctypes.byref(parent), ctypes.byref(children), ctypes.byref(count))
        found = []
        for window in children[:count.value]:
            name = self._title(window)
            if name == title or (ending and name.endswith(title)):
                found.append(window)
        if children:
            self.x11.XFree(children)
        return found

    def _title(self, window):
        """A window's title as GTK sets it, in UTF-8 (_NET_WM_NAME): an image window's title
        ("… – GIMP") is not Latin-1, so XFetchName would find no name at all; "" when none."""
        kind, size, items, left = ctypes.c_ulong(), ctypes.c_int(), ctypes.c_ulong(), ctypes.c_ulong()
        data = ctypes.c_void_p()
        self.x11.XGetWindowProperty(self.connection, window, self._net_wm_name, 0, 1024, False, 0,  # AnyPropertyType
                                    ctypes.byref(kind), ctypes.byref(size), ctypes.byref(items),
                                    ctypes.byref(left), ctypes.byref(data))
        if not data.value:
            return ""
        title = ctypes.string_at(data.value, items.value).decode(errors="replace")
        self.x11.XFree(data)
        return title

    def press(self, window, keys):
        """Type `keys` into `window`: X keysym names, held down together when joined by + (Return,
        Escape, Control_L+z)."""
        self.x11.XSetInputFocus(self.connection, window, 1, 0)  # RevertToPointerRoot, CurrentTime
        codes = [self.x11.XKeysymToKeycode(self.connection, self.x11.XStringToKeysym(key.encode()))
                 for key in keys.split("+")]
        for code in codes:
            self.fake_key(self.connection, code, True, 0)
        for code in reversed(codes):
            self.fake_key(self.connection, code, False, 0)
        self.x11.XSync(self.connection, False)

    def stop(self):
        if getattr(self, "connection", None):
            self.x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
            self.x11.XCloseDisplay(self.connection)
            self.connection = None
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class DialogAnswers:
    """Answers the windows called `title` as they open, one key each, in order: a window still
    open a few seconds after its key (not ready for input yet) gets the key again.  A window
    counts as the next one once the previous has gone (X reuses a closed client's window ids)."""

    def __init__(self, x, title, keys, settle=1.0, again=4.0):
        self.x, self.title, self.keys = x, title, list(keys)
        self.settle, self.again = settle, again
        self.current, self.since, self.pressed = None, 0.0, None

    def poll(self):
        now = time.monotonic()
        if self.current is None:
            found = self.x.windows(self.title)
            if found and self.keys:
                self.current, self.since, self.pressed = found[0], now, None
        elif self.current not in self.x.windows(self.title):
            self.current = None
            self.keys.pop(0)
        elif now - self.since > self.settle and (self.pressed is None or now - self.pressed > self.again):
            self.x.press(self.current, self.keys[0])
            self.pressed = now

    @property
    def done(self):
        return not self.keys


class KeyRequests:
    """Types keys when the GIMP session asks: its script writes them (as press() takes them) into
    the file `request` and waits; they go to the window whose title ends with `title_end`, and
    the file is removed once they are typed, which tells the script to look at the result."""

    def __init__(self, x, request, title_end):
        self.x, self.request, self.title_end = x, request, title_end
        self.typed = []

    def poll(self):
        if not self.request.exists():
            return
        found = self.x.windows(self.title_end, ending=True)
        if found:  # else the window is not there yet: the script gives up after its timeout
            keys = self.request.read_text().strip()
            self.x.press(found[0], keys)
            self.typed.append(keys)
            self.request.unlink()
