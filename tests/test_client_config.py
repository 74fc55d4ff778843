"""tinct_client's settings file: where it is on each system, what it may hold, and that arguments and
environment variables still win over it; plus a real tinctd started from the file's start command."""
import json
import subprocess
import sys

import pytest

from daemon_fixture import free_port, tinct_client


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """A settings file in a throw-away $XDG_CONFIG_HOME, with none of our environment variables."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("TINCT_ENDPOINT", "TINCTD_COMMAND"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "tinct" / "client.json"
    path.parent.mkdir()

    def write(content):
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path
    return write


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"XDG_CONFIG_HOME": "/x/conf"}, "/x/conf/tinct/client.json"),
    ("linux", {"HOME": "/home/u"}, "/home/u/.config/tinct/client.json"),
    ("darwin", {"HOME": "/Users/u"}, "/Users/u/Library/Application Support/tinct/client.json"),
    ("win32", {"APPDATA": "/appdata"}, "/appdata/tinct/client.json"),
])
def test_config_path_per_system(monkeypatch, platform, env, expected):
    for name in ("XDG_CONFIG_HOME", "APPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert tinct_client.config_path().replace("\\", "/") == expected


def test_no_file_means_the_defaults(settings, tmp_path):
    assert tinct_client.load_config() == {}
    with tinct_client.Client() as c:
        assert c.endpoint == tinct_client.default_endpoint() and c.start_command == []


def test_the_file_gives_endpoint_and_start_command(settings):
    settings({"endpoint": "tcp://127.0.0.1:6001", "start_command": ["/opt/t/tinctd", "--endpoint", "tcp://127.0.0.1:6001"],
              "comment": "keys we do not know are ignored"})
    with tinct_client.Client() as c:
        assert c.endpoint == "tcp://127.0.0.1:6001"
        assert c.start_command == ["/opt/t/tinctd", "--endpoint", "tcp://127.0.0.1:6001"]
    settings({"start_command": "'/opt/my tinct/tinctd' --device cpu"})  # a string is split like $TINCTD_COMMAND
    assert tinct_client.load_config() == {"start_command": ["/opt/my tinct/tinctd", "--device", "cpu"]}


def test_arguments_and_environment_win_over_the_file(settings, monkeypatch):
    settings({"endpoint": "tcp://127.0.0.1:6001", "start_command": ["/opt/t/tinctd"]})
    with tinct_client.Client("tcp://127.0.0.1:6002", start_command=["mine"]) as c:
        assert (c.endpoint, c.start_command) == ("tcp://127.0.0.1:6002", ["mine"])
    monkeypatch.setenv("TINCT_ENDPOINT", "tcp://127.0.0.1:6003")
    monkeypatch.setenv("TINCTD_COMMAND", "env-tinctd --flag")
    with tinct_client.Client() as c:
        assert (c.endpoint, c.start_command) == ("tcp://127.0.0.1:6003", ["env-tinctd", "--flag"])


def test_the_files_start_command_is_only_for_the_files_daemon(settings, monkeypatch):
    """Pointed elsewhere (a test's own tinctd, say), the client must not start the installed one."""
    settings({"endpoint": "tcp://127.0.0.1:6001", "start_command": ["/opt/t/tinctd"]})
    monkeypatch.setenv("TINCT_ENDPOINT", "tcp://127.0.0.1:6009")
    with tinct_client.Client() as c:
        assert c.start_command == []
    with tinct_client.Client("tcp://127.0.0.1:6001") as c:
        assert c.start_command == ["/opt/t/tinctd"]
    settings({"start_command": ["/opt/t/tinctd"]})  # no endpoint: the start command is for the default one
    monkeypatch.delenv("TINCT_ENDPOINT")
    with tinct_client.Client() as c:
        assert (c.endpoint, c.start_command) == (tinct_client.default_endpoint(), ["/opt/t/tinctd"])


@pytest.mark.parametrize("content, words", [
    ("{not json", "cannot be read"),
    ("[1, 2]", "needs \"endpoint\" as text"),
    ({"endpoint": 5571}, "needs \"endpoint\" as text"),
    ({"endpoint": ""}, "needs \"endpoint\" as text"),
    ({"start_command": ["tinctd", 3]}, "list of words"),
])
def test_a_broken_file_is_a_sentence_naming_it(settings, content, words):
    path = settings(content)
    with pytest.raises(tinct_client.TinctError) as err:
        tinct_client.Client()
    assert err.value.code == "unavailable" and words in str(err.value) and str(path) in str(err.value)
    assert "installer" in str(err.value)


def test_a_real_tinctd_is_started_from_the_file(settings, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    state = tmp_path / "state"
    settings({"endpoint": endpoint, "start_command": [sys.executable, "-m", "tinct.serve",
                                                      "--endpoint", endpoint,
                                                      "--state-dir", str(state)]})
    try:
        with tinct_client.Client(timeout=5, retries=0) as c:
            assert c.hello()["version"] == tinct_client.PROTOCOL_VERSION
            assert c.started
    finally:
        pid = json.loads((state / "tinctd.lock").read_text())["pid"]
        subprocess.run(["kill", str(pid)], check=True)
