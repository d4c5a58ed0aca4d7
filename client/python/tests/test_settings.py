"""The connection settings resolve in scopctl's order: arguments, then the
environment, then the client config file, then the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from scop import ConfigError, Settings
from scop.settings import DEFAULT_SERVER


def check(env: dict, expected: tuple, **args: object) -> None:
    settings = Settings.resolve(env=env, **args)  # type: ignore[arg-type]
    assert (settings.server, settings.token) == expected, (args, env)


def test_arguments_beat_the_environment_which_beats_the_file_which_beats_the_default(tmp_path: Path) -> None:
    (tmp_path / "client.token").write_text("# written by scopd standalone\nfile-token\n")
    (tmp_path / "flag.token").write_text("flag-file-token\n")
    config = tmp_path / "scopctl.yaml"
    config.write_text("server: http://from-file:1\ntoken_file: client.token\nca_cert: ca.pem\n")

    check({"HOME": str(tmp_path / "nobody")}, (DEFAULT_SERVER, None))
    file_env = {"SCOPCTL_CONFIG": str(config)}
    check(file_env, ("http://from-file:1", "file-token"))
    # Relative paths in the file are relative to the file.
    assert Settings.resolve(env=file_env).ca_cert == tmp_path / "ca.pem"
    env = {**file_env, "SCOP_SERVER": "from-env:2", "SCOP_TOKEN": "env-token"}
    check(env, ("http://from-env:2", "env-token"))
    check(env, ("https://from-flag:3", "flag-file-token"), server="https://from-flag:3", token_file=tmp_path / "flag.token")
    check(env, ("https://from-flag:3", "flag-token"), server="https://from-flag:3", token="flag-token", token_file=tmp_path / "flag.token")
    # The default location is used when SCOPCTL_CONFIG is not set.
    xdg = tmp_path / "xdg" / "scop"
    xdg.mkdir(parents=True)
    (xdg / "scopctl.yaml").write_text("server: http://from-xdg:4\ntoken: inline\n")
    check({"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": "/nonexistent"}, ("http://from-xdg:4", "inline"))


def test_the_token_is_never_shown() -> None:
    settings = Settings.resolve(server="h:1", token="secret-token", env={})
    assert "secret-token" not in repr(settings)


def test_missing_or_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^client config: .*missing\.yaml"):
        Settings.resolve(env={"SCOPCTL_CONFIG": str(tmp_path / "missing.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: http://h:1\ntokn: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: tokn: unknown field `tokn`"):
        Settings.resolve(env={"SCOPCTL_CONFIG": str(bad)})
    empty = tmp_path / "empty.token"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match=r"empty\.token: no token in the file$"):
        Settings.resolve(token_file=empty, env={})


def test_a_client_certificate_and_key_come_together_and_need_tls(tmp_path: Path) -> None:
    config = tmp_path / "scopctl.yaml"
    config.write_text("server: https://from-file:1\nclient_cert: me.pem\nclient_key: me.key\n")
    settings = Settings.resolve(env={"SCOPCTL_CONFIG": str(config)})
    assert (settings.client_cert, settings.client_key) == (tmp_path / "me.pem", tmp_path / "me.key")
    env = {"SCOPCTL_CONFIG": str(config), "SCOP_CLIENT_CERT": "/env/c.pem", "SCOP_CLIENT_KEY": "/env/c.key"}
    assert Settings.resolve(env=env).client_cert == Path("/env/c.pem")
    given = Settings.resolve(env=env, client_cert="a.pem", client_key="a.key")
    assert (given.client_cert, given.client_key) == (Path("a.pem"), Path("a.key"))
    with pytest.raises(ConfigError, match="client_cert and client_key go together"):
        Settings.resolve(env={"HOME": "/nonexistent"}, server="https://x:1", client_cert="a.pem")
    with pytest.raises(ConfigError, match="needs an https:// server"):
        Settings.resolve(env={"HOME": "/nonexistent"}, server="x:1", client_cert="a.pem", client_key="a.key")
