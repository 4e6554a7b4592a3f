"""Verify schema with sslmode verify-ca / verify-full against a real PostgreSQL that serves TLS with a test CA.

The CA bundle reaches libpq as a file of the code asset or as a Secrets Manager secret holding the PEM
(DB_SSLROOTCERT); without one the function's settings are refused before any connection.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dbmigrate import connect
from release_steps import config, verify_schema
from release_steps.config import DatabaseSettings
from release_steps.errors import ConfigurationError

from deployflow.local.postgres import ConnectionParams, PostgresCluster
from tests.functional import test_verify_schema as plain
from tests.functional.release_world import REGION
from tests.functional.test_verify_schema import SecretWriter, invoke, invoke_error, migrate_db, rds_secret

# The database-secret fixtures of the plain verify tests (moto's Secrets Manager, the function's settings).
secrets_world = plain.secrets_world
put_secret = plain.put_secret

Key = ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[Key, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(ca_key: Key, ca_cert: x509.Certificate) -> tuple[Key, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("deployflow-test-db"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TlsWorld:
    """A PostgreSQL cluster serving TLS with a certificate of ``ca_pem``'s CA; ``other_ca_pem`` is a stranger."""

    def __init__(self, cluster: PostgresCluster, ca_pem: str, other_ca_pem: str) -> None:
        self.cluster = cluster
        self.ca_pem = ca_pem
        self.other_ca_pem = other_ca_pem


@pytest.fixture(scope="module")
def tls_world() -> Iterator[TlsWorld]:
    ca_key, ca_cert = _ca("deployflow test CA")
    server_key, server_cert = _server_cert(ca_key, ca_cert)
    _, other_ca = _ca("some other CA")
    directory = Path(tempfile.mkdtemp(prefix="deployflow-tls-"))
    directory.chmod(0o755)
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_text(_pem(server_cert))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)  # the server refuses a key others can read
    if os.geteuid() == 0:  # the cluster's server runs as the postgres OS user
        account = pwd.getpwnam("postgres")
        for path in (cert_file, key_file):
            os.chown(path, account.pw_uid, account.pw_gid)
    cluster = PostgresCluster(settings={"ssl": "on", "ssl_cert_file": str(cert_file), "ssl_key_file": str(key_file)})
    try:
        cluster.start()
        yield TlsWorld(cluster, _pem(ca_cert), _pem(other_ca))
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tls_db(tls_world: TlsWorld, put_secret: SecretWriter, secrets_world: pytest.MonkeyPatch) -> Iterator[None]:
    """A migrated database on the TLS cluster, named by the function's secret."""
    params: ConnectionParams = tls_world.cluster.create_database("verify_tls")
    try:
        migrate_db(params)
        put_secret(rds_secret(params))
        yield
    finally:
        tls_world.cluster.drop_database("verify_tls")


def _set(env: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    config.reset()


def _store_pem(pem: str) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return str(client.create_secret(Name="deployflow/db-ca", SecretString=pem)["ARN"])


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_given_verified_tls_and_the_ca_in_the_code_asset_when_verified_then_match_over_tls(
    tls_world: TlsWorld, tls_db: None, secrets_world: pytest.MonkeyPatch, release_context: Any, mode: str
) -> None:
    asset_dir = verify_schema.ASSET_ROOT / "certs"
    created = not asset_dir.exists()
    asset_dir.mkdir(exist_ok=True)
    bundle = asset_dir / "test-ca-bundle.pem"
    bundle.write_text(tls_world.ca_pem)
    try:
        _set(secrets_world, DB_SSLMODE=mode, DB_SSLROOTCERT="certs/test-ca-bundle.pem")

        result = invoke(release_context)

        assert result.verdict == "match"
        target = verify_schema.database_target(config.database_settings())
        assert target.sslrootcert == str(bundle)
        with contextlib.closing(connect(target)) as conn, conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,), "the session is encrypted"
    finally:
        bundle.unlink()
        if created:
            asset_dir.rmdir()


def test_given_verify_full_and_the_ca_in_a_secret_when_verified_then_match(
    tls_world: TlsWorld, tls_db: None, secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    _set(secrets_world, DB_SSLMODE="verify-full", DB_SSLROOTCERT=_store_pem(tls_world.ca_pem))

    assert invoke(release_context).verdict == "match"


def test_given_verify_full_and_another_ca_when_verified_then_configuration_error_names_the_certificate(
    tls_world: TlsWorld, tls_db: None, secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    _set(secrets_world, DB_SSLMODE="verify-full", DB_SSLROOTCERT=_store_pem(tls_world.other_ca_pem))

    message = invoke_error(release_context, ConfigurationError)

    assert "certificate verify failed" in message
    assert "DB_SSLMODE=verify-full" in message


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_given_verified_tls_without_a_ca_bundle_when_configured_then_refused_before_any_connection(mode: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        DatabaseSettings.from_environ({"DB_SECRET_ARN": "arn:aws:secretsmanager:x", "DB_SSLMODE": mode})

    assert f"DB_SSLMODE is {mode}, which needs DB_SSLROOTCERT" in raised.value.message


def test_given_a_ca_bundle_path_that_is_not_in_the_asset_when_verified_then_configuration_error_names_it(
    tls_world: TlsWorld, tls_db: None, secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    _set(secrets_world, DB_SSLMODE="verify-full", DB_SSLROOTCERT="certs/missing.pem")

    message = invoke_error(release_context, ConfigurationError)

    assert "certs/missing.pem (DB_SSLROOTCERT)" in message
    assert "put the PEM file under functions/" in message


def test_given_a_secret_without_a_pem_when_verified_then_configuration_error(
    tls_world: TlsWorld, tls_db: None, secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    _set(secrets_world, DB_SSLMODE="verify-ca", DB_SSLROOTCERT=_store_pem("not a certificate"))

    assert "holds no PEM certificate" in invoke_error(release_context, ConfigurationError)
