"""tinctd's and the plugins' CURVE keys, for endpoints other users can reach (loopback TCP).

Over TCP every local user can connect to 127.0.0.1, and a second user can bind the port
while tinctd is down.  So on TCP tinctd always speaks CURVE: the plugins know tinctd's public
key and send nothing to a peer that cannot prove it holds the secret one (no layer, no
shared-memory key), and tinctd lets in only clients holding the user's plugin key.  Both key
pairs live in the user's private key folder (0700, secrets 0600), written by the installer
or by tinctd's first start: $TINCT_KEY_DIR, else `keys` beside the plugins' settings file.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import zmq
import zmq.auth

from .endpoint import EndpointError, private_folder

SERVER = "tinctd"   # tinctd.key (public, the plugins read it) and tinctd.key_secret
PLUGIN = "plugin"   # plugin.key and plugin.key_secret: what the user's plugins connect with


def config_dir() -> Path:
    """tinct's settings folder, as the plugins' tinct_client.config_path() finds it."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tinct"


def key_dir() -> Path:
    return Path(os.environ.get("TINCT_KEY_DIR") or config_dir() / "keys")


def ensure(folder: Path | None = None) -> Path:
    """The key folder with both key pairs, made where missing; EndpointError if the folder is not private."""
    folder = folder or key_dir()
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_folder(folder)
    for name in (SERVER, PLUGIN):
        if not (folder / f"{name}.key_secret").is_file() or not (folder / f"{name}.key").is_file():
            with tempfile.TemporaryDirectory(dir=folder) as fresh:  # whole pairs appear at once
                os.chmod(fresh, 0o700)
                public, secret = zmq.auth.create_certificates(fresh, name)
                os.chmod(secret, 0o600)
                os.replace(secret, folder / f"{name}.key_secret")
                os.replace(public, folder / f"{name}.key")
    return folder


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise EndpointError(f"the key file {path} cannot be read ({exc})") from None
    if secret and not secret_key:
        raise EndpointError(f"{path} holds only a public key; tinctd needs a secret key file (.key_secret)")
    return public, secret_key


def server_pair(secret_file: Path | None = None) -> tuple[bytes, bytes]:
    """tinctd's (public, secret) key, from `secret_file` or the user's key folder."""
    path = secret_file or ensure() / f"{SERVER}.key_secret"
    if secret_file is None:
        private_folder(path.parent, create=False)
    public, secret = _load(path, secret=True)
    assert secret is not None
    return public, secret


def allowed_clients(extra: Path | None = None) -> set[bytes]:
    """Public keys tinctd lets in: the user's plugin key, and every *.key in `extra` (remote clients)."""
    allowed = {_load(ensure() / f"{PLUGIN}.key", secret=False)[0]}
    if extra is not None:
        if not extra.is_dir():
            raise EndpointError(f"--curve-clients {extra} is not a folder of public key files")
        allowed |= {_load(path, secret=False)[0] for path in sorted(extra.glob("*.key"))}
    return allowed


def main() -> int:
    """`python -m tinct.serve.keys`: make the user's key folder if it is not there (the installer runs it)."""
    try:
        print(ensure())
    except EndpointError as exc:
        print(f"tinct keys: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
