"""The canary of a gradual rollout, read from the trainer's registry (``model_rollouts``)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

_SELECT = """
SELECT r.version, r.share, v.artifact_uri
FROM model_rollouts r JOIN model_versions v USING (version)
WHERE r.state = 'canary' AND v.artifact_uri IS NOT NULL
"""


@dataclass(frozen=True)
class Canary:
    version: int
    share: float
    artifact_uri: str


class RolloutStore:
    """Reads the current canary (one query every refresh; a lazily created small pool)."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def canary(self) -> Canary | None:
        """The version in canary rollout, or None. Raises OSError/asyncpg errors when
        Postgres is unreachable (the caller keeps what it holds)."""
        if self.dsn is None:
            return None
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                self.dsn, min_size=0, max_size=1, timeout=2.0, command_timeout=3.0
            )
        try:
            row = await self.pool.fetchrow(_SELECT, timeout=3.0)
        except asyncpg.UndefinedTableError:  # a registry older than the rollout migration
            return None
        if row is None:
            return None
        return Canary(int(row["version"]), float(row["share"]), str(row["artifact_uri"]))

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
