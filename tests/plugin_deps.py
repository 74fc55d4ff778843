"""Checks for installers/plugin-deps.sh as both plugin installers use it: a private folder of
pyzmq/msgpack wheels fetched with pip for the editor's Python version."""

import socket
import subprocess
import sys

import pytest


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


needs_pypi = pytest.mark.skipif(not _pypi_reachable(),
                                reason="pypi.org unreachable: the private folder is fetched with pip")


def assert_imported_from(private):
    """pyzmq and msgpack import from `private` alone: -S leaves out site-packages, and the plugins
    put that folder first on sys.path under exactly this name."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import zmq, msgpack; "
             "print(zmq.__file__); print(msgpack.__file__)")
    found = subprocess.run([sys.executable, "-S", "-c", probe, str(private)], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert all(line.startswith(str(private)) for line in found.stdout.split())
