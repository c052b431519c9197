"""Certificates for the TLS tests, made with the openssl command line: a CA, a broker certificate for
127.0.0.1 and localhost, one naming another host, a client certificate (its key also encrypted), and a
second CA that signed nothing the broker shows."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# EC P-256: keys are made in milliseconds, and both OpenSSL and Java take them.
_NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
KEY_PASSWORD = "key-password"


@dataclass(frozen=True)
class Certs:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def untrusted_ca(self) -> Path:
        return self.directory / "untrusted-ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's key and certificate (127.0.0.1, localhost) in one PEM file, as Kafka reads them."""
        return self.directory / "broker-keystore.pem"

    @property
    def other_host_keystore(self) -> Path:
        """A broker key and certificate signed by the CA for kafka.invalid only."""
        return self.directory / "other-host-keystore.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def client_key_encrypted(self) -> Path:
        """``client_key`` encrypted with ``KEY_PASSWORD``."""
        return self.directory / "client-encrypted.key"


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _signed(name: str, subject: str, san: str | None, cwd: Path) -> None:
    """``name``.key and ``name``.pem, signed by ca.pem."""
    _openssl(
        "req", "-new", *_NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd
    )
    extensions = []
    if san is not None:
        (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extensions = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        f"{name}.pem",
        *extensions,
        cwd=cwd,
    )


def make_certs(directory: Path) -> Certs:
    if shutil.which("openssl") is None:
        pytest.fail(
            "the TLS tests make their certificates with the openssl command line: install it", pytrace=False
        )
    directory.mkdir(parents=True, exist_ok=True)
    for ca, subject in (("ca", "/CN=stream-tagger test CA"), ("untrusted-ca", "/CN=untrusted CA")):
        _openssl(
            "req",
            "-x509",
            *_NEW_KEY,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            "-days",
            "2",
            "-subj",
            subject,
            cwd=directory,
        )
    _signed("broker", "/CN=localhost", "IP:127.0.0.1,DNS:localhost", directory)
    _signed("other-host", "/CN=kafka.invalid", "DNS:kafka.invalid", directory)
    _signed("client", "/CN=stream-tagger", None, directory)
    _openssl(
        "pkcs8",
        "-topk8",
        "-in",
        "client.key",
        "-out",
        "client-encrypted.key",
        "-passout",
        f"pass:{KEY_PASSWORD}",
        cwd=directory,
    )
    for name in ("broker", "other-host"):
        keystore = (directory / f"{name}.key").read_text() + (directory / f"{name}.pem").read_text()
        (directory / f"{name}-keystore.pem").write_text(keystore)
    return Certs(directory)
