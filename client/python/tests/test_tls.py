"""The client over TLS: `ca_cert` trusts the CA that signed the coordinator's
certificate; without it the system's CAs do not, and the coordinator counts
as unreachable, as does plain text sent to its TLS port. With a client CA on
the coordinator, `client_cert`/`client_key` name a user without a token."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import scop
from scop import Client

from conftest import binary, free_port


def openssl(dir: Path, args: str) -> None:
    subprocess.run(["openssl", *args.split()], cwd=dir, check=True, capture_output=True)


def certificates(dir: Path) -> None:
    """`ca.pem`, and `server.pem`/`server.key` signed by it for 127.0.0.1."""
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(dir, f"req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=scop-python-test-CA")
    openssl(dir, f"req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1")
    (dir / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(dir, "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext")


def client_certificate(dir: Path, name: str) -> None:
    """`<name>.pem`/`<name>.key`: a client certificate with subject CN=<name>, signed by `ca.pem`."""
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(dir, f"req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}")
    (dir / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl(dir, f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    dir = tmp_path_factory.mktemp("tls")
    certificates(dir)
    client_certificate(dir, "py-viewer")
    digest = hashlib.sha256(b"tls-token").hexdigest()
    (dir / "users.yaml").write_text(
        f"users:\n  - {{ name: ops, role: admin, tokens: ['sha256:{digest}'] }}\n"
        "  - { name: viewer-bot, role: viewer, cert_subjects: [py-viewer] }\n"
    )
    (dir / "worker.token").write_text("worker-token\n")
    port = free_port()
    with open(dir / "scopd.log", "wb") as log:
        process = subprocess.Popen(
            [
                str(binary("scopd")),
                "--public-addr", f"127.0.0.1:{port}",
                "--worker-addr", "127.0.0.1:0",
                "--metrics-addr", "127.0.0.1:0",
                "--data-dir", str(dir / "data"),
                "--users", str(dir / "users.yaml"),
                "--client-ca", str(dir / "ca.pem"),
                "--worker-token-file", str(dir / "worker.token"),
                "--tls-cert", str(dir / "server.pem"),
                "--tls-key", str(dir / "server.key"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"scopd did not listen on {port}: {(dir / 'scopd.log').read_text()}")
            time.sleep(0.1)
    yield port, dir
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def test_the_ca_cert_trusts_the_coordinators_certificate(tls_server: tuple) -> None:
    port, dir = tls_server
    https = f"https://127.0.0.1:{port}"
    with Client(server=https, token="tls-token", ca_cert=dir / "ca.pem") as client:
        assert client.list() == []
        with pytest.raises(scop.NotFound):
            client.get("nope")
    with pytest.raises(scop.Unreachable, match=f"server {https} is unreachable"):
        Client(server=https, token="tls-token").list()
    with pytest.raises(scop.Unreachable):
        Client(server=f"http://127.0.0.1:{port}", token="tls-token").list()


def test_a_client_certificate_names_its_user_without_a_token(tls_server: tuple) -> None:
    port, dir = tls_server
    https = f"https://127.0.0.1:{port}"
    cert = {"client_cert": dir / "py-viewer.pem", "client_key": dir / "py-viewer.key"}
    with Client(server=https, ca_cert=dir / "ca.pem", **cert) as client:
        assert client.list() == []
        # The certificate's user is a viewer: it may read, not drain.
        with pytest.raises(scop.Unauthenticated, match="may not call DrainWorker"):
            client.drain("some-worker")
    with Client(server=https, ca_cert=dir / "ca.pem") as anonymous:
        with pytest.raises(scop.Unauthenticated, match="missing authorization"):
            anonymous.list()
