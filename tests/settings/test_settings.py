"""Settings: every bad value is one line and exit 2; a port in use, an unwritable
folder or an unreachable database is one line and exit 1; layers, environment
names, relative paths and check-config, all through the real command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import yaml

from settings import load_config
from settings.shown import redacted
from tests.helpers import ROOT, free_port, run_server_py


def one_line_error(result: subprocess.CompletedProcess, status: int) -> str:
    """The single stderr line of a command that failed with ``status``."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def effective(result: subprocess.CompletedProcess) -> dict:
    """check-config's output, parsed (its first line is a comment)."""
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return str(path)


# --- bad settings: one line naming key, value, origin and what is expected; exit 2 ----
@pytest.mark.parametrize(
    "text, expected",
    [
        ("servr:\n  port: 8001\n", ["unknown setting servr", "did you mean server?"]),
        ("server:\n  prot: 8001\n", ["unknown setting server.prot", "did you mean server.port?"]),
        (
            "storage:\n  sqlite_synchronous: MAYBE\n",
            ["storage.sqlite_synchronous = 'MAYBE'", "one of OFF, NORMAL, FULL, EXTRA"],
        ),
        ("server:\n  processes: -3\n", ["server.processes = -3", "an integer >= 0"]),
        (
            "storage:\n  sqlite_page_size: 1000\n",
            ["storage.sqlite_page_size = 1000", "a power of two from 512 to 65536"],
        ),
        ("storage:\n  sqlite_page_size: 131072\n", ["storage.sqlite_page_size = 131072"]),
        ("server:\n  port: abc\n", ["server.port = 'abc'", "an integer from 1 to 65535"]),
        ("server:\n  port: true\n", ["server.port = True", "an integer from 1 to 65535"]),
        (
            "storage:\n  mongo_write_concern: [1]\n",
            ["storage.mongo_write_concern = [1]", '"majority"'],
        ),
        (
            "server:\n  allowed_origins: {a: b}\n",
            ["server.allowed_origins = {'a': 'b'}", "a list of strings"],
        ),
        ("server: 8000\n", ["server = 8000", "a mapping of the server settings"]),
        (
            "websocket:\n  auth_timeout_secs: 0\n",
            ["websocket.auth_timeout_secs = 0", "a number of seconds > 0"],
        ),
        ("server:\n  header_timeout_secs: -1\n", ["server.header_timeout_secs = -1", "> 0"]),
        (
            "server:\n  trusted_proxies: [10.0.0.0/8, proxy.example]\n",
            ["server.trusted_proxies.1 = 'proxy.example'", "IP addresses or CIDR networks"],
        ),
        ("logging:\n  format: xml\n", ["logging.format = 'xml'", "text or json"]),
        ("logging:\n  level: LOUD\n", ["logging.level = 'LOUD'", "DEBUG, INFO, WARNING"]),
        ("ops:\n  bind: localhost\n", ["ops.bind = 'localhost'", "HOST:PORT"]),
        (
            "storage:\n  url: postgres://db/chat\n",
            ["storage.url = 'postgres://db/chat'", "sqlite:///PATH or mongodb://"],
        ),
    ],
)
def test_a_bad_setting_in_a_file_is_one_line_naming_it_and_exit_2(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    line = one_line_error(run_server_py("--config", path, "check-config"), 2)
    for part in [*expected, path]:
        assert part in line


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"CHAT_PORT": "99999"},
            ["server.port = '99999' (from CHAT_PORT)", "an integer from 1 to 65535"],
        ),
        ({"CHAT_PROCESSES": "-3"}, ["server.processes = '-3' (from CHAT_PROCESSES)", ">= 0"]),
        ({"CHAT_SERVER__PORT": "0"}, ["server.port = '0' (from CHAT_SERVER__PORT)"]),
        (
            {"CHAT_SERVR__PORT": "8001"},
            ["unknown setting CHAT_SERVR__PORT", "did you mean CHAT_SERVER__PORT?"],
        ),
        (
            {"CHAT_SERVER__PROT": "8001"},
            ["unknown setting server.prot (from CHAT_SERVER__PROT)", "did you mean server.port?"],
        ),
        ({"CHAT_SERVER__ALLOWED_ORIGINS": "https://a.example"}, ["CHAT_SERVER__...", "JSON"]),
    ],
)
def test_a_bad_setting_in_the_environment_is_one_line_naming_the_variable(env, expected):
    line = one_line_error(run_server_py("check-config", env=env), 2)
    for part in expected:
        assert part in line


def test_a_bad_flag_value_is_named_as_from_the_command_line():
    line = one_line_error(run_server_py("--port", "70000", "check-config"), 2)
    assert "server.port = 70000 (on the command line)" in line


def test_the_server_refuses_a_bad_port_instead_of_listening_on_a_random_one(tmp_path):
    # The bug was: CHAT_PORT=99999 served on some other port. Now nothing starts.
    result = run_server_py(
        env={"CHAT_PORT": "99999", "CHAT_STORAGE_URL": f"sqlite:///{tmp_path}/x.sqlite3"}
    )
    assert "server.port = '99999'" in one_line_error(result, 2)
    assert not (tmp_path / "x.sqlite3").exists()


def test_a_settings_file_that_is_not_yaml_or_missing_is_one_line(tmp_path):
    path = write_config(tmp_path, "server: [\n")
    assert "is not valid YAML at line 2" in one_line_error(
        run_server_py("--config", path, "check-config"), 2
    )
    missing = str(tmp_path / "nowhere.yaml")
    assert f"cannot read {missing}" in one_line_error(
        run_server_py("check-config", env={"CHAT_CONFIG": missing}), 2
    )


# --- the server cannot start: one line, exit 1 ---------------------------------------
def test_a_port_in_use_is_one_line_and_exit_1_before_storage_is_touched(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_server_py(
            "--port",
            str(port),
            env={"CHAT_HOST": "127.0.0.1", "CHAT_STORAGE_URL": f"sqlite:///{tmp_path}/x.sqlite3"},
        )
    line = one_line_error(result, 1)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "already in use" in line
    assert not (tmp_path / "x.sqlite3").exists()


def test_an_uncreatable_data_folder_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "data").write_text("a file where the data folder should be")
    db = tmp_path / "data" / "chat.sqlite3"
    result = run_server_py("--port", str(free_port()), env={"CHAT_STORAGE_URL": f"sqlite:///{db}"})
    line = one_line_error(result, 1)
    assert f"storage unavailable (database {db})" in line and "cannot create" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_a_read_only_data_folder_is_one_line_and_exit_1(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = run_server_py(
            "--port", str(free_port()), env={"CHAT_STORAGE_URL": f"sqlite:///{folder}/chat.sqlite3"}
        )
    finally:
        folder.chmod(0o700)
    assert "storage unavailable" in one_line_error(result, 1)


def test_an_unreachable_mongodb_is_one_line_and_exit_1():
    result = run_server_py(
        "--port",
        str(free_port()),
        timeout=30,
        env={
            "CHAT_STORAGE_URL": "mongodb://127.0.0.1:1/chat",
            "CHAT_STORAGE__MONGO_TIMEOUT_MS": "300",
        },
    )
    line = one_line_error(result, 1)
    assert "storage unavailable (database mongodb://127.0.0.1:1/chat)" in line
    assert "127.0.0.1:1" in line


def test_account_commands_on_an_unreachable_database_are_one_line_and_exit_1():
    result = run_server_py(
        "list-admins",
        timeout=30,
        env={
            "CHAT_STORAGE_URL": "mongodb://127.0.0.1:1/chat",
            "CHAT_STORAGE__MONGO_TIMEOUT_MS": "300",
        },
    )
    assert "storage unavailable" in one_line_error(result, 1)


# --- layers, environment names, relative paths ---------------------------------------
def test_layers_are_defaults_then_file_then_environment_then_flags(tmp_path):
    path = write_config(tmp_path, "server:\n  port: 1111\nlogging:\n  level: debug\n")
    base = effective(run_server_py("check-config"))
    assert base["server"]["port"] == 8000 and base["logging"]["level"] == "INFO"
    from_file = effective(run_server_py("--config", path, "check-config"))
    assert from_file["server"]["port"] == 1111 and from_file["logging"]["level"] == "DEBUG"
    from_env = effective(
        run_server_py(
            "--config", path, "check-config", env={"CHAT_PORT": "4444", "CHAT_SERVER__PORT": "2222"}
        )
    )
    assert from_env["server"]["port"] == 2222  # the full name wins over the short one
    from_flag = effective(
        run_server_py(
            "--config", path, "--port", "3333", "check-config", env={"CHAT_SERVER__PORT": "2222"}
        )
    )
    assert from_flag["server"]["port"] == 3333


def test_every_setting_can_come_from_chat_section__key():
    got = effective(
        run_server_py(
            "check-config",
            env={
                "CHAT_WEBSOCKET__PING_INTERVAL_SECS": "7",
                "CHAT_SERVER__ALLOWED_ORIGINS": '["https://shop.example"]',
                "CHAT_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8"]',
                "CHAT_STORAGE__MONGO_RETRY_WRITES": "false",
                "CHAT_LIMITS__RATE_PER_SEC": "2.5",
            },
        )
    )
    assert got["websocket"]["ping_interval_secs"] == 7.0
    assert got["server"]["allowed_origins"] == ["https://shop.example"]
    assert got["server"]["trusted_proxies"] == ["10.0.0.0/8"]
    assert got["storage"]["mongo_retry_writes"] is False
    assert got["limits"]["rate_per_sec"] == 2.5


def test_the_default_database_is_beside_config_yaml_whatever_the_working_directory(tmp_path):
    got = effective(run_server_py("check-config", cwd=str(tmp_path)))
    assert got["storage"]["url"] == f"sqlite:///{ROOT}/data/chat.sqlite3"


def test_a_relative_path_follows_the_file_that_set_it_not_the_working_directory(tmp_path):
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    (conf / "chat.yaml").write_text("storage:\n  url: sqlite:///data/chat.sqlite3\n")
    env = {
        "CHAT_CONFIG": str(conf / "chat.yaml"),
        "CHAT_HOST": "127.0.0.1",
        "CHAT_PORT": str(free_port()),
    }
    created = run_server_py("create-admin", "--name", "Dana", env=env, cwd=str(elsewhere))
    assert created.returncode == 0, created.stderr
    assert (conf / "data" / "chat.sqlite3").exists()
    assert not (elsewhere / "data").exists()
    # The server started from yet another folder uses that file, and says so.
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "server.py")],
        cwd=str(tmp_path),
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert line.startswith("Serving on http://127.0.0.1:")
    assert line.rstrip().endswith(f"database {conf}/data/chat.sqlite3")
    assert not (tmp_path / "data").exists()


def test_a_relative_path_from_the_environment_follows_the_working_directory(tmp_path):
    got = effective(
        run_server_py(
            "check-config", cwd=str(tmp_path), env={"CHAT_STORAGE_URL": "sqlite:///db/x.sqlite3"}
        )
    )
    assert got["storage"]["url"] == f"sqlite:///{tmp_path}/db/x.sqlite3"


# --- check-config and what the rest of the code reads ---------------------------------
def test_check_config_redacts_passwords_in_mongodb_urls():
    result = run_server_py(
        "check-config",
        env={"CHAT_STORAGE_URL": "mongodb://chat:s3cret@127.0.0.1:1/chat?authSource=admin"},
    )
    got = effective(result)
    assert got["storage"]["url"] == "mongodb://chat:***@127.0.0.1:1/chat?authSource=admin"
    assert "s3cret" not in result.stdout


def test_secret_settings_of_any_section_are_redacted():
    shown = redacted(
        {
            "webhooks": {
                "secret": "abc",
                "api_key": "k",
                "url": "https://u:p@h/x",
                "timeout_secs": 5,
            },
            "server": {"port": 8000},
        }
    )
    assert shown == {
        "webhooks": {
            "secret": "***",
            "api_key": "***",
            "url": "https://u:***@h/x",
            "timeout_secs": 5,
        },
        "server": {"port": 8000},
    }


def test_load_config_returns_the_nested_dict_the_server_reads(tmp_path):
    config = load_config(environ={}, overrides={"server": {"port": "8001"}})
    assert config["server"]["port"] == 8001  # validated and converted
    assert config["server"]["trusted_proxies"] == []
    assert (
        config["server"]["idle_connection_timeout_secs"],
        config["server"]["body_timeout_secs"],
        config["server"]["header_timeout_secs"],
    ) == (60, 30, 10)
    assert config["storage"]["sqlite_synchronous"] == "FULL"


def test_lower_case_choices_are_accepted_and_normalised():
    config = load_config(
        environ={"CHAT_STORAGE__SQLITE_SYNCHRONOUS": "normal", "CHAT_LOGGING__LEVEL": "warning"}
    )
    assert config["storage"]["sqlite_synchronous"] == "NORMAL"
    assert config["logging"]["level"] == "WARNING"
