"""Kafka connection security from settings (issue 17 point 10): prod talks SASL_SSL/SCRAM to
Strimzi's TLS listener; every client the services build (producer, consumer, admin) gets it."""

from __future__ import annotations

import ssl

import certifi
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr, ValidationError

from streamrec_shared import kafka
from streamrec_shared.settings import KafkaSettings


def _sasl_ssl() -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="streamrec-kafka-bootstrap:9093",
        security_protocol="SASL_SSL",
        sasl_username="streamrec",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=certifi.where(),
    )


def test_plaintext_by_default() -> None:
    args = kafka.connection(KafkaSettings())
    assert args["security_protocol"] == "PLAINTEXT"
    assert not {"ssl_context", "sasl_mechanism", "sasl_plain_password"} & set(args)


def test_sasl_ssl_verifies_the_brokers_and_sends_scram_credentials() -> None:
    args = kafka.connection(_sasl_ssl())
    context = args["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the configured CA file was loaded
    assert (args["security_protocol"], args["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (args["sasl_plain_username"], args["sasl_plain_password"]) == ("streamrec", "s3cret")


async def test_every_client_accepts_the_secured_connection() -> None:
    settings = _sasl_ssl()
    producer = kafka.producer(settings)
    consumer = kafka.consumer(settings, "events.v1", group_id="g")
    admin = AIOKafkaAdminClient(**kafka.connection(settings))
    assert isinstance(producer, AIOKafkaProducer)
    assert isinstance(consumer, AIOKafkaConsumer)
    for client in (producer.client, consumer._client, admin._client):  # their AIOKafkaClient
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
    await producer.stop()
    await consumer.stop()
    await admin.close()


def test_sasl_without_credentials_is_refused_naming_them() -> None:
    with pytest.raises(ValidationError, match=r"sasl_username and kafka\.sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="streamrec")
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings(security_protocol="SASL_WHATEVER")  # type: ignore[arg-type]
