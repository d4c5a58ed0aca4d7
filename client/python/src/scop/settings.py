"""Where the coordinator is and how to authenticate, resolved exactly as `scopctl` does.

Each setting is taken from the first layer that has it: the arguments given to
`Client`, then the environment (`SCOP_SERVER`, `SCOP_TOKEN`, `SCOP_CLIENT_CERT`,
`SCOP_CLIENT_KEY`), then the client
config file that `scopd standalone` writes, then the default server
`http://127.0.0.1:7070`. The config file is `$SCOPCTL_CONFIG`, else
`$XDG_CONFIG_HOME/scop/scopctl.yaml`, else `$HOME/.config/scop/scopctl.yaml`;
relative paths inside it are relative to the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

import yaml

from .errors import ConfigError

DEFAULT_SERVER = "http://127.0.0.1:7070"
CONFIG_ENV = "SCOPCTL_CONFIG"
_CONFIG_KEYS = ("server", "token", "token_file", "ca_cert", "client_cert", "client_key")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Settings:
    """The resolved connection. `repr` never shows the token."""

    server: str
    token: Optional[str] = field(default=None, repr=False)
    ca_cert: Optional[Path] = None
    #: PEM certificate and key this client presents (mutual TLS): a coordinator
    #: with a client CA takes the certificate's subject CN as the user.
    client_cert: Optional[Path] = None
    client_key: Optional[Path] = None

    @property
    def tls(self) -> bool:
        return self.server.startswith("https://")

    @property
    def target(self) -> str:
        """`host:port`, the address gRPC dials."""
        return self.server.split("://", 1)[1].rstrip("/")

    @staticmethod
    def resolve(
        server: Optional[str] = None,
        token: Optional[str] = None,
        token_file: Optional[PathLike] = None,
        ca_cert: Optional[PathLike] = None,
        env: Optional[Mapping[str, str]] = None,
        client_cert: Optional[PathLike] = None,
        client_key: Optional[PathLike] = None,
    ) -> "Settings":
        """Applies every layer; `env` defaults to this process's environment."""
        env = os.environ if env is None else env

        def var(name: str) -> Optional[str]:
            value = env.get(name)
            return value if value else None

        config, config_dir = _read_config(env)

        def in_config_dir(path: str) -> Path:
            p = Path(path)
            return config_dir / p if config_dir is not None and not p.is_absolute() else p

        resolved_server = server or var("SCOP_SERVER") or config.get("server") or DEFAULT_SERVER
        if token:
            resolved_token: Optional[str] = token
        elif token_file is not None:
            resolved_token = read_token(Path(token_file))
        elif var("SCOP_TOKEN"):
            resolved_token = var("SCOP_TOKEN")
        elif config.get("token"):
            resolved_token = config["token"]
        elif config.get("token_file"):
            resolved_token = read_token(in_config_dir(config["token_file"]))
        else:
            resolved_token = None
        if ca_cert is not None:
            resolved_ca: Optional[Path] = Path(ca_cert)
        elif config.get("ca_cert"):
            resolved_ca = in_config_dir(config["ca_cert"])
        else:
            resolved_ca = None

        def path_setting(given: Optional[PathLike], variable: str, key: str) -> Optional[Path]:
            if given is not None:
                return Path(given)
            if var(variable):
                return Path(var(variable))  # type: ignore[arg-type]
            return in_config_dir(config[key]) if config.get(key) else None

        cert = path_setting(client_cert, "SCOP_CLIENT_CERT", "client_cert")
        key = path_setting(client_key, "SCOP_CLIENT_KEY", "client_key")
        if (cert is None) != (key is None):
            raise ConfigError("client_cert and client_key go together: give both or neither")
        resolved = Settings(_normalise_server(resolved_server), resolved_token, resolved_ca, cert, key)
        if cert is not None and not resolved.tls:
            raise ConfigError(f"a client certificate needs an https:// server, got {resolved.server}")
        return resolved


def config_path(env: Mapping[str, str]) -> Optional[Path]:
    """Where the client config file is looked for."""
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    base = env.get("XDG_CONFIG_HOME")
    if base:
        return Path(base) / "scop" / "scopctl.yaml"
    home = env.get("HOME")
    if home:
        return Path(home) / ".config" / "scop" / "scopctl.yaml"
    return None


def _read_config(env: Mapping[str, str]) -> "tuple[dict[str, str], Optional[Path]]":
    """The config file's settings and directory. A file named by
    `$SCOPCTL_CONFIG` must exist; the default location may be empty."""
    path = config_path(env)
    if path is None or (not env.get(CONFIG_ENV) and not path.exists()):
        return {}, None
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"client config: {path}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"client config: {path}: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"client config: {path}: expected a mapping of {', '.join(_CONFIG_KEYS)}")
    for key, value in data.items():
        if key not in _CONFIG_KEYS:
            raise ConfigError(
                f"client config: {path}: {key}: unknown field `{key}`, expected one of {', '.join(_CONFIG_KEYS)}"
            )
        if not isinstance(value, str):
            raise ConfigError(f"client config: {path}: {key}: expected a string, got {value!r}")
    return data, path.parent


def read_token(path: Path) -> str:
    """The first line of a token file that is neither empty nor a `#` comment."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from e
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise ConfigError(f"{path}: no token in the file")


def _normalise_server(server: str) -> str:
    """`host:port` means `http://host:port`."""
    return server if "://" in server else f"http://{server}"
