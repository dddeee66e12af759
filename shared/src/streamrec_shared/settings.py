"""Settings groups composed by each service's own ``BaseSettings``.

Every service reads the environment with prefix ``STREAMREC_`` and nested delimiter ``__``,
e.g. ``STREAMREC_KAFKA__BOOTSTRAP_SERVERS=kafka:9092``. Groups are plain ``BaseModel``s so a
service (or a test) can build them directly; each refuses keys it does not have (``Group``).
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Group(BaseModel):
    """Base of every settings group: a key the group does not have (a misspelt or renamed
    ``STREAMREC_<GROUP>__<KEY>``) stops the service at startup with a message naming it, where
    it would otherwise be ignored and the default silently apply (an API key list under the
    wrong name would leave the write endpoints open). Unknown groups are still ignored: one
    environment may carry every service's groups."""

    model_config = ConfigDict(extra="forbid")


Scope = Literal["events:write", "catalog:write", "import", "profiles:read", "admin", "publishable"]
"""``profiles:read``: personal data (``GET /v1/users/{id}/profile``). ``import``: history loads
(``POST /v1/events/history``). ``publishable``: a browser key (it ships in a web page): may send
events and orders only, rate-limited per client address; recommendations and search are open
reads. ``admin`` covers every scope."""


class KafkaSettings(Group):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "streamrec"
    # Real Kafka: idempotent producer on. The local Tansu broker rejects it: the stack turns it off.
    enable_idempotence: bool = True
    acks: Literal["all", "1", "0"] = "all"
    request_timeout_ms: int = 5000
    # Consumer-group timing: short in the local stack (Tansu joins after ~half the rebalance time).
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    rebalance_timeout_ms: int = 10000
    events_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    create_topics: bool = True
    # Connection security (prod: SASL_SSL with SCRAM-SHA-512 against Strimzi's TLS listener).
    # PLAINTEXT is for the local broker and for clusters reachable only by the services.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # PEM file of the CA that signed the brokers' certificates (None: the system's CAs).
    ssl_cafile: Path | None = None

    @model_validator(mode="after")
    def _credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password and self.sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"kafka.sasl_username and kafka.sasl_password are required with "
                f"security_protocol {self.security_protocol}"
            )
        return self


class RedisSettings(Group):
    """Where Redis is and who the services are to it.

    ``username`` / ``password``: an ACL user (prod: ``streamrec``, its password from a Secret as
    ``STREAMREC_REDIS__PASSWORD``; docs/operations.md, "Redis"). They are written into ``url``
    (percent-encoded, replacing credentials the URL held), so every client built from ``url``
    (redis-py's ``from_url``, the recommender's lean connection) authenticates the same way.
    Neither set: the URL's own credentials, if any (none: Redis's default user)."""

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    username: str | None = None
    password: SecretStr | None = None
    socket_timeout_s: float = 0.25
    connect_timeout_s: float = 0.25

    @model_validator(mode="after")
    def _credentials_in_url(self) -> RedisSettings:
        if self.password is None:
            if self.username:
                raise ValueError("redis.username needs redis.password")
            return self
        parsed = urlsplit(self.url.get_secret_value())
        user = quote(self.username, safe="") if self.username else ""
        secret = quote(self.password.get_secret_value(), safe="")
        host = parsed.netloc.rpartition("@")[2]
        netloc = f"{user}:{secret}@{host}"
        self.url = SecretStr(urlunsplit(parsed._replace(netloc=netloc)))
        return self


class PostgresSettings(Group):
    dsn: SecretStr = SecretStr("postgresql://streamrec@127.0.0.1:5432/streamrec")
    min_size: int = 1
    max_size: int = 10
    command_timeout_s: float = 30.0
    migrate: bool = True


class HttpSettings(Group):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = 2 * 1024 * 1024


class ApiKey(Group):
    """One API key. ``sha256`` is the hex SHA-256 of the key; the key itself is never stored."""

    name: str
    sha256: str
    scopes: list[Scope]
    rate_per_s: float = 2000.0
    burst: float = 4000.0


class AuthSettings(Group):
    """API keys. With no keys configured, write and admin endpoints are open (local dev only)."""

    api_keys: list[ApiKey] = Field(default_factory=list)

    def find(self, presented: str) -> ApiKey | None:
        digest = hash_key(presented)
        for key in self.api_keys:
            if hmac.compare_digest(key.sha256, digest):
                return key
        return None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _default_artifact_cache() -> Path:
    return Path(tempfile.gettempdir()) / "streamrec-artifacts"


class ArtifactSettings(Group):
    """Where model artifacts live: ``file:///dir`` (default) or an S3-compatible ``s3://`` URL.

    ``s3://``: credentials the standard AWS way (env, profile, web identity, instance role);
    ``endpoint_url`` for an S3-compatible server (else ``AWS_ENDPOINT_URL``, else AWS).
    ``cache_dir``: where readers keep the versions they downloaded from ``s3://``.
    """

    uri: str = "file:///var/lib/streamrec/artifacts"
    retention: int = Field(default=5, ge=1)
    endpoint_url: str | None = None
    cache_dir: Path = Field(default_factory=_default_artifact_cache)


class _ArtifactEnvironment(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_", env_nested_delimiter="__", extra="ignore"
    )

    artifacts: ArtifactSettings = ArtifactSettings()


def artifact_settings_from_env() -> ArtifactSettings:
    """``STREAMREC_ARTIFACTS__*`` as every service's settings read it (and nothing else)."""
    return _ArtifactEnvironment().artifacts


class LogSettings(Group):
    level: str = "INFO"
    json_format: bool = True


class ProfileSettings(Group):
    """How events become a user's weighted items (shared by processor, trainer, recommender)."""

    half_life_days: float = Field(default=30.0, gt=0)
    max_recent_items: int = Field(default=200, ge=1)
    max_history: int = Field(default=50, ge=1)


class FeedbackSettings(Group):
    """The key that signs rec ids (``streamrec_shared.rec_ids``): the recommender signs, the
    stream processor verifies, so both need the same ``STREAMREC_FEEDBACK__REC_ID_KEY`` (at
    least 32 characters, from a Secret). Unset: nothing is credited (a warning at start)."""

    rec_id_key: SecretStr | None = Field(default=None, min_length=32)

    def key(self) -> bytes | None:
        return None if self.rec_id_key is None else self.rec_id_key.get_secret_value().encode()


class AttributionTimes(Group):
    """The attribution times the recommender and the stream processor share (each has them in
    its own group: ``STREAMREC_RECOMMENDER__...`` and ``STREAMREC_PROCESSOR__...``; set both
    alike)."""

    attribution_window_s: int = Field(default=86_400, ge=60)
    """A purchase of a recommended item within this many seconds counts as a conversion: the
    stream processor counts it, the recommender keeps what it showed (``sr:rs:<user>``) as long."""
    online_retention_s: int = Field(default=8 * 86_400, ge=3600)
    """How long the per-minute online counters live."""


class ServiceSettings(BaseSettings):
    """Base for each service's settings: env prefix ``STREAMREC_``, nested with ``__``.

    A variable sets one key of a group and keeps the rest of the group's default as the
    service declares it (``http: HttpSettings = HttpSettings(port=8002)``: setting
    ``STREAMREC_HTTP__WORKERS`` leaves the trainer on 8002), not the group class's defaults."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_",
        env_nested_delimiter="__",
        extra="ignore",
        nested_model_default_partial_update=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    postgres: PostgresSettings = PostgresSettings()
    auth: AuthSettings = AuthSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    log: LogSettings = LogSettings()
    profile: ProfileSettings = ProfileSettings()
