# plugin-deps.sh — sourced by install-gimp-plugin.sh and install-krita-plugin.sh (which define
# say and die): make pyzmq and msgpack importable from an editor's own Python, the one place
# both plugins get them from.  In order: what that Python already has; Debian's python3-zmq and
# python3-msgpack (apt-get, as root, for a Python under /usr/bin); else a private folder that
# pip fills with wheels for that Python's version, which the plugin puts on sys.path.
#
#   plugin_deps PYTHON PRIVATE_DIR FORCE_PRIVATE(0|1) ALLOW_APT(0|1) EDITOR

deps_importable() { "$1" -c "import sys; sys.path.insert(0, '$2'); import zmq, msgpack" 2>/dev/null; }

plugin_deps() {
  local python=$1 dir=$2 private=$3 apt=$4 editor=$5 version
  local -a pip
  version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  case "$(command -v "$python")" in /usr/bin/*) ;; *) apt=0 ;; esac
  if [ "$private" = 0 ] && [ "$apt" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
     && ! deps_importable "$python" "$dir"; then
    say "installing python3-zmq python3-msgpack with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-zmq python3-msgpack \
      || say "apt-get failed; falling back to pip"
  fi
  if [ "$private" = 1 ] || ! deps_importable "$python" "$dir"; then
    if "$python" -m pip --version >/dev/null 2>&1; then pip=("$python" -m pip)
    elif command -v pip3 >/dev/null; then pip=(pip3)
    else die "Python $version lacks pyzmq/msgpack and there is no pip to fetch them; install python3-zmq and python3-msgpack (or pip)"
    fi
    say "pip-installing pyzmq and msgpack for Python $version into $(basename "$(dirname "$dir")")/$(basename "$dir")"
    # --python-version makes any pip fetch wheels for the editor's Python rather than its own;
    # --no-cache-dir leaves nothing behind in ~/.cache
    "${pip[@]}" install --quiet --disable-pip-version-check --no-cache-dir --target "$dir" \
      --python-version "$version" --only-binary=:all: pyzmq msgpack
  fi
  deps_importable "$python" "$dir" || die "pyzmq/msgpack still do not import in $python ($version), $editor's Python"
}
