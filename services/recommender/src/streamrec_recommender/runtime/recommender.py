"""The recommender's runtime: model handle, Redis mirrors, policy inputs, the scoring batcher,
background loops.

``Recommender.recommend`` is the per-request path: one Redis round trip (cache field, profile,
attributes), then the pure ``Engine`` on in-memory state, then an in-memory impression record
(flushed to Redis in the background). Every dependency failure degrades the answer and is
counted in ``streamrec_recommender_degraded_total``; none raises to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import orjson

from streamrec_recommender import online
from streamrec_recommender.adapters.campaigns import CampaignStore
from streamrec_recommender.adapters.catalog_feed import CatalogFeed
from streamrec_recommender.adapters.definitions import Database
from streamrec_recommender.adapters.experiments import ExperimentStore
from streamrec_recommender.adapters.impressions import OnlineRecorder
from streamrec_recommender.adapters.redis_state import (
    RedisState,
    RedisUnavailableError,
    UserRead,
    count_degraded,
)
from streamrec_recommender.adapters.rollouts import RolloutStore
from streamrec_recommender.online import RecTag
from streamrec_recommender.runtime.model_handle import ModelHandle
from streamrec_recommender.serving import catalog as catalogs
from streamrec_recommender.serving import newitems
from streamrec_recommender.serving.catalog import CatalogIndex
from streamrec_recommender.serving.context import Context, Job, Request, Result
from streamrec_recommender.serving.engine import Engine
from streamrec_recommender.serving.engine import Settings as EngineSettings
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.newitems import Product
from streamrec_recommender.serving.policy import ArmStats, ThompsonBandit
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared import metrics, profile
from streamrec_shared.events import ModelAnnouncement
from streamrec_shared.model_watch import ModelWatcher
from streamrec_shared.rec_ids import RecIds
from streamrec_shared.tasks import cancel_all

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """A served recommendation, ready to be rendered."""

    user_id: str
    rec_id: str
    result: Result
    cached: bool


class Recommender:
    def __init__(
        self,
        settings: RecommenderSettings,
        state: RedisState,
        *,
        handle: ModelHandle | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.settings = settings
        s = settings.recommender
        self.state = state
        self.handle = handle or ModelHandle(s)
        self.engine = Engine(
            EngineSettings(
                few_events=s.few_events,
                exclude_viewed=s.exclude_viewed,
                trending_blend=s.trending_blend,
                candidates_min=s.candidates_min,
                prior_strength=s.bandit_prior_strength,
            ),
            ThompsonBandit(s.bandit_arms),
            rng or np.random.default_rng(),
        )
        self.recorder = OnlineRecorder(
            state.background,
            window_s=s.attribution_window_s,
            retention_s=s.online_retention_s,
            cache_ttl_s=s.cache_ttl_s,
        )
        dsn = settings.postgres.dsn.get_secret_value() if settings.postgres.dsn else None
        self.database = Database(dsn)
        self.rec_ids = RecIds(settings.feedback.key(), online.ALGORITHM_CODES)
        self.experiments = ExperimentStore(self.database, state)
        self.rollouts = RolloutStore(dsn)
        self.campaigns = CampaignStore(self.database, state)
        self.catalog: CatalogIndex | None = None
        self.arm_stats: dict[str, dict[str, ArmStats]] = {}
        self.config_tag = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: list[tuple[Request, Context, asyncio.Future[Result]]] = []
        self._flush_scheduled = False
        self._scanned = 0.0
        self.watcher: ModelWatcher | None = None
        self.feed = CatalogFeed(self._knows, self._add_products)

    # --- readiness ---------------------------------------------------------------------------
    @property
    def model(self) -> ServingModel | None:
        return self.handle.current

    def ready(self) -> bool:
        """A model is loaded, or the trending lists were read once (even empty: a new shop
        with no model and no event is answered with an empty list that says why)."""
        return self.model is not None or self.state.trending.loaded

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, *, watch_models: bool = True) -> None:
        s = self.settings.recommender
        await self._try(self._refresh_catalog_full)
        await self._try(self.state.refresh_trending)
        await self._try(self.experiments.refresh)
        await self._try(self.campaigns.refresh)
        self._update_config_tag()
        loops: list[tuple[str, Callable[[], Awaitable[Any]], float]] = [
            ("unavailable", self._refresh_unavailable, s.catalog_refresh_s),
            ("categories", self._refresh_catalog_full, s.categories_refresh_s),
            ("catalog-size", self._catalog_grew, 5.0),
            ("code-books", self.state.check_code_books, 1.0),
            ("trending", self.state.refresh_trending, s.trending_refresh_s),
            ("trending-changes", self.state.refresh_trending_changes, s.trending_poll_s),
            ("experiments", self._refresh_experiments, s.experiments_refresh_s),
            ("campaigns", self._refresh_campaigns, s.campaigns_refresh_s),
            ("bandit", self._refresh_bandit, s.bandit_refresh_s),
            ("model-age", self._model_age, 5.0),
            ("canary", self._refresh_canary, s.model_poll_interval_s),
        ]
        for name, fn, every in loops:
            self._tasks.append(asyncio.create_task(self._every(fn, every), name=name))
        self._tasks.append(
            asyncio.create_task(self.recorder.run(s.online_flush_s), name="online-flush")
        )
        self._tasks.append(
            asyncio.create_task(metrics.watch_loop_lag("recommender"), name="loop-lag")
        )
        if watch_models and s.live_products:
            self._tasks.append(
                asyncio.create_task(self.feed.run(self.settings.kafka), name="catalog-feed")
            )
        if watch_models:
            dsn = self.settings.postgres.dsn.get_secret_value()
            self.watcher = ModelWatcher(
                self.settings.kafka,
                dsn or None,
                self._on_model,
                poll_interval_s=s.model_poll_interval_s,
            )
            await self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        await cancel_all(self._tasks)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.recorder.flush()
        await self.database.close()
        await self.rollouts.close()

    async def _on_model(self, ann: ModelAnnouncement) -> None:
        await self.handle.on_model(ann)
        model = self.model
        if model is not None and self.feed.pending:  # products newer than this model
            for pid in [p for p in self.feed.pending if p in model.index_of]:
                del self.feed.pending[pid]
            await self._add_products(list(self.feed.pending.values()))
        await self._rebuild_catalog()

    def _knows(self, product_id: str) -> bool:
        model = self.model
        return model is not None and product_id in model.index_of

    async def _add_products(self, products: Sequence[Product]) -> None:
        """Append products the model does not know to its item space (``serving.newitems``)
        and swap the extended model in like a new one (same version)."""
        model = self.model
        if model is None or model.content_map is None or not products:
            return
        content_map = model.content_map
        if model.n_items < 50_000:
            extended = newitems.extend(model, products, content_map)
        else:
            extended = await asyncio.to_thread(newitems.extend, model, products, content_map)
        if extended is model or self.model is not model:  # nothing placed, or swapped meanwhile
            return
        self.handle.swap(extended)
        await self._rebuild_catalog()
        logger.info(
            "model %d: %d products added since it was loaded", model.version,
            len(extended.live_items),
        )  # fmt: skip

    def install_model(self, model: ServingModel) -> None:
        """Swap in a prepared model directly (tests, benchmarks)."""
        self.handle.swap(model)
        self.catalog = None

    async def _every(self, fn: Callable[[], Awaitable[Any]], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self._try(fn)

    async def _try(self, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            await fn()
        except RedisUnavailableError:
            pass
        except Exception:  # loop boundary: a background refresh must never die
            logger.exception("background refresh %s failed", getattr(fn, "__name__", fn))

    async def _refresh_unavailable(self) -> None:
        changed = await self.state.refresh_unavailable()
        model = self.model
        if changed or (
            model is not None and (self.catalog is None or not self.catalog.fits(model))
        ):
            await self._rebuild_catalog()

    async def _refresh_catalog_full(self) -> None:
        self._scanned = time.monotonic()
        await self.state.refresh_unavailable()
        await self.state.refresh_categories()
        await self._rebuild_catalog()

    async def _catalog_grew(self) -> None:
        """Re-scan categories early when products were added (one HLEN every 5 s, at most one
        scan a minute)."""
        size = await self.state.bg(lambda: self.state.background.hlen(profile.CATALOG))
        if size != len(self.state.catalog.categories) and time.monotonic() - self._scanned > 60:
            await self._refresh_catalog_full()

    async def _rebuild_catalog(self) -> None:
        model = self.model
        if model is None:
            return
        mirror = self.state.catalog
        prev = self.catalog
        if (
            prev is not None
            and prev.fits(model)
            and prev.unavailable_version == mirror.version
            and prev.categories_revision == mirror.revision
        ):
            return
        reuse = (
            prev is not None and prev.fits(model) and prev.categories_revision == mirror.revision
        )
        categories = mirror.categories
        if model.live_items:  # live products the category scan has not seen yet
            extra = {
                p.product_id: p.category
                for p in self.feed.pending.values()
                if p.product_id not in categories
            }
            categories = {**extra, **categories} if extra else categories
        if reuse or model.n_items < 50_000:
            built = catalogs.build(
                model, mirror.unavailable, mirror.version, categories, mirror.revision, prev
            )
        else:
            built = await asyncio.to_thread(
                catalogs.build,
                model,
                mirror.unavailable,
                mirror.version,
                categories,
                mirror.revision,
                prev,
            )
        if self.model is model:
            self.catalog = built

    async def _refresh_experiments(self) -> None:
        await self.experiments.refresh()
        self._update_config_tag()

    async def _refresh_campaigns(self) -> None:
        await self.campaigns.refresh()
        self._update_config_tag()

    async def _refresh_bandit(self) -> None:
        window = self.settings.recommender.bandit_window_s
        self.arm_stats = await self.state.bg(lambda: self.recorder.arm_stats(window))

    async def _model_age(self) -> None:
        self.handle.update_age()

    async def _refresh_canary(self) -> None:
        """Hold the version in canary rollout (the trainer's registry), or drop it."""
        try:
            canary = await self.rollouts.canary()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            logger.warning("rollout state unavailable, keeping what is held: %s", exc)
            return
        if canary is None:
            await self.handle.set_canary(None)
        else:
            await self.handle.set_canary(canary.version, canary.artifact_uri, canary.share)

    def _rollout_label(self, result: Result, model: ServingModel | None) -> Result:
        """During a rollout every answer outside an experiment is labelled with the rollout's
        experiment and its side (``canary`` / ``control``), so the online counters compare
        the two versions."""
        canary = self.handle.canary
        if canary is None or result.experiment is not None or model is None:
            return result
        side = "canary" if model is canary else "control"
        return dataclasses.replace(result, experiment=f"rollout{canary.version}", variant=side)

    def refresh_config(self) -> None:
        """Experiments or campaigns changed: new cache fields from now on."""
        self._update_config_tag()

    def _update_config_tag(self) -> None:
        doc = json.dumps(
            [
                sorted((e.name, e.status, repr(e.variants)) for e in self.experiments.all.values()),
                sorted(repr(c) for c in self.campaigns.all.values()),
            ]
        )
        self.config_tag = hashlib.blake2b(doc.encode(), digest_size=4).hexdigest()

    # --- per request -------------------------------------------------------------------------
    def cache_field(self, req: Request, model: ServingModel | None) -> str | None:
        if model is None:
            return None
        excl = ",".join(sorted(req.exclude))
        # n_items: live products appended; the catalog's availability version: a product
        # deactivated or re-activated (restocked) leaves / enters the next answer, not the
        # next answer after the cache's TTL
        space = f"{model.version}.{model.n_items}.{self.state.catalog.version}"
        seen = "" if req.include_seen is None else str(int(req.include_seen))
        field = (
            f"{space}|{self.config_tag}|{req.algorithm}|{req.k}|{req.category or ''}|{excl}|{seen}"
        )
        return f"{field}|{','.join(req.context)}" if req.context else field

    async def recommend(self, req: Request) -> Answer:
        model = self.handle.for_user(req.user_id)
        cache_field = self.cache_field(req, model)
        degraded: tuple[str, ...] = ()
        read = UserRead(None, None, None)
        try:
            read = await self.state.read_user(req.user_id, cache_field)
        except RedisUnavailableError:
            degraded = ("redis",)
            count_degraded("redis")
        now = time.time()
        latest = read.recent_events[0].ts if read.recent_events else None
        known = read.known
        doc = self._cached(read.cached, latest)
        if doc is not None:
            metrics.RECOMMENDER_CACHE.labels("hit").inc()
            result = Result(
                algorithm=doc["algorithm"],
                strategy=doc["strategy"],
                items=[(p, s) for p, s in doc["items"]],
                segment=doc["segment"],
                experiment=doc.get("experiment"),
                variant=doc.get("variant"),
                model_version=doc.get("model_version"),
            )
            return self._answer(
                req, self._rollout_label(result, model), now, cached=True, known=known
            )
        if cache_field is not None and not degraded:
            metrics.RECOMMENDER_CACHE.labels("miss").inc()
        catalog = self.catalog
        if catalog is not None and model is not None and not catalog.fits(model):
            catalog = None
        ctx = Context(
            model=model,
            catalog=catalog,
            unavailable=self.state.catalog.unavailable,
            trending=self.state.trending,
            profile=read.profile,
            attributes=read.attributes,
            recent_events=read.recent_events,
            experiments=self.experiments.running,
            arm_stats=self.arm_stats,
            campaigns=list(self.campaigns.all.values()),
            degraded=degraded,
            now=now,
        )
        result = await self._score(req, ctx)
        # Nothing is stored for a user Redis knows nothing about (no profile, attributes or
        # recent events): anyone can ask for any id, and such answers come from the request alone.
        if cache_field is not None and not degraded and model is not None and known:
            doc = {
                "algorithm": result.algorithm,
                "strategy": result.strategy,
                "items": result.items,
                "segment": result.segment,
                "experiment": result.experiment,
                "variant": result.variant,
                "model_version": result.model_version,
                "latest": latest,
            }
            self.recorder.cache(req.user_id, cache_field, orjson.dumps(doc), read.revision)
        return self._answer(req, self._rollout_label(result, model), now, cached=False, known=known)

    def _cached(self, raw: bytes | None, latest: float | None) -> dict[str, Any] | None:
        """A cached answer still valid now (computed after the user's latest read-your-writes
        event ``latest``, no item became unavailable since), or None. Ingest deletes the cache
        with each event, but an answer computed just before may be written just after."""
        if raw is None:
            return None
        try:
            doc: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if doc.get("latest") != latest:
            return None
        unavailable = self.state.catalog.unavailable
        if unavailable and any(p in unavailable for p, _ in doc.get("items", ())):
            return None
        return doc

    def _score(self, req: Request, ctx: Context) -> asyncio.Future[Result]:
        """Queue a request for the next scoring batch (same event-loop turn)."""
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((req, ctx, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            window = self.settings.recommender.batch_window_ms
            loop = asyncio.get_running_loop()
            # Wait for company only where it pays: exact scoring (one GEMM for the batch); the
            # ANN index gains nothing from batching.
            model = ctx.model
            if window > 0 and model is not None and model.ann is None:
                loop.call_later(window / 1000.0, self._flush)
            else:
                loop.call_soon(self._flush)
        elif len(self._pending) >= self.settings.recommender.max_batch:
            self._flush_now()
        return fut

    def _flush_now(self) -> None:
        """A full batch does not wait for the window (the scheduled flush finds less to do)."""
        pending, self._pending = self._pending, []
        self._score_batch(pending)

    def _flush(self) -> None:
        """Score every queued request: one matrix product per batch, then the pure engine.

        Requests that became ready in the same loop turn share a GEMM (B, f) x (f, n') over
        the items that can still make their top (``ExactScorer``) instead of B separate
        matrix-vector products, which would each read those factors again.
        """
        pending, self._pending = self._pending, []
        self._flush_scheduled = False
        size = self.settings.recommender.max_batch
        for start in range(0, len(pending), size):
            self._score_batch(pending[start : start + size])

    def _score_batch(self, batch: list[tuple[Request, Context, asyncio.Future[Result]]]) -> None:
        started = time.perf_counter()
        steps: list[tuple[Request, Context, Job | None, asyncio.Future[Result]]]
        try:
            jobs = self._prepare(batch)
        except Exception:  # batch boundary: the futures must settle, never hang
            logger.exception("batch scoring failed; scoring its %d requests one by one", len(batch))
            count_degraded("engine")
            steps = [(req, ctx, None, fut) for req, ctx, fut in batch]
        else:
            steps = [(req, ctx, job, fut) for (req, ctx, fut), job in zip(batch, jobs, strict=True)]
        self._finish(steps, 0, [time.perf_counter() - started])

    def _finish(
        self,
        steps: list[tuple[Request, Context, Job | None, asyncio.Future[Result]]],
        i: int,
        spent: list[float],
    ) -> None:
        """Answer request ``i`` of a prepared batch, then schedule the next one.

        One request per loop turn: each answer goes out as soon as it is ready (the request's
        task is woken before the next step runs), instead of every request of the batch
        waiting for the last one. ``spent`` accumulates the batch's scoring time. A request
        whose batch could not be prepared (``job`` None) is prepared on its own here.
        """
        started = time.perf_counter()
        req, ctx, job, fut = steps[i]
        try:
            if not fut.done():
                try:
                    result = self.engine.answer(job or self.engine.prepare(req, ctx))
                except Exception:  # batch boundary: one request must not fail the others
                    logger.exception("scoring failed for user %s; serving popularity", req.user_id)
                    count_degraded("engine")
                    result = self._fallback(req, ctx)
                fut.set_result(result)
        finally:  # the rest of the batch must settle whatever happened here
            spent[0] += time.perf_counter() - started
            if i + 1 < len(steps):
                asyncio.get_running_loop().call_soon(self._finish, steps, i + 1, spent)
            else:
                took = spent[0] / len(steps)
                metrics.RECOMMENDER_SCORING_DURATION.labels("batch").observe(took)

    def _fallback(self, req: Request, ctx: Context) -> Result:
        """A request whose scoring failed: trending, else the model's popularity (held in
        memory, so an answer even with Redis down); empty only if that fails too."""
        items: list[tuple[str, float]] = []
        how = "trending"
        try:
            items, how = self.engine.fallback_ids(ctx, req, ctx.profile)
        except Exception:  # request boundary: the future must settle
            logger.exception("fallback failed for user %s", req.user_id)
        if how == "model_popularity" and ctx.model is not None:
            return Result(
                "popular", "degraded:error_fallback:model", items, "new",
                model_version=ctx.model.version,
            )  # fmt: skip
        return Result("popular", "degraded:error_fallback", items, "new")

    def _prepare(self, batch: list[tuple[Request, Context, asyncio.Future[Result]]]) -> list[Job]:
        """Each request prepared by the engine (vector, recent items, plan, filter), and the
        exact ALS candidates its plan reads (``Job.depth``) from one product over the batch."""
        model = batch[0][1].model
        jobs = [self.engine.prepare(req, ctx) for req, ctx, _ in batch]
        exact = model.exact if model is not None else None
        if exact is None:
            return jobs
        dense = [
            j
            for j in jobs
            if j.depth > 0 and j.u is not None and j.flt is not None and j.model is model
        ]
        if dense:
            queries = np.stack([j.u for j in dense if j.u is not None])
            found = exact.top(queries, [j.flt for j in dense if j.flt is not None],
                              [j.depth for j in dense])  # fmt: skip
            for j, ranked in zip(dense, found, strict=True):
                j.als = ranked
        return jobs

    def _answer(
        self, req: Request, result: Result, now: float, *, cached: bool, known: bool
    ) -> Answer:
        """The answer with its rec id; the impression counted, and for a ``known`` user
        also which product it showed (``sr:rs:<user>``, for attributing a purchase without a
        rec id; an unknown user's clicks are attributed by the rec id they carry)."""
        tag = RecTag(now, result.algorithm, result.segment, result.experiment, result.variant)
        rec_id = self.rec_ids.new(tag)
        shown = [p for p, _ in result.items] if known else []
        self.recorder.impression(req.user_id, rec_id, tag, shown)
        metrics.RECOMMENDER_REQUESTS.labels(result.algorithm, result.strategy).inc()
        return Answer(req.user_id, rec_id, result, cached)
