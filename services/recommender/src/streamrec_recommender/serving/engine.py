"""One recommendation, start to end, without I/O: tiers, algorithms, filters, boosts.

One pass per request: ``prepare`` (user vector, recent items, plan, item filter: each step
once) -> candidates (``run``: the scorer registered for the planned algorithm, along the
fallback chain) -> rank (campaign boosts) -> filter and top-up -> ``Result``; ``answer`` is
everything after ``prepare``. The batcher (``runtime.recommender``) calls the two halves
around one matrix product for many jobs; ``recommend`` runs them back to back.

Inputs are already fetched (model reference, catalog index, user profile, trending mirror,
experiments, bandit statistics, campaigns); the result names the algorithm and the strategy
that produced it, so every answer is explainable.

User vector (ALS space of the served model), first that exists:
``profile_vector`` (the stream processor's live vector, same model version) -> ``fold_in``
(the live profile's weighted items folded into this model) -> ``model_vector`` (the trained
factor) -> none.

Tiers (``algorithm=auto``): a running experiment's assignment decides first (every user,
intention-to-treat); otherwise no history -> ``cold_start:category_trending`` (category from
``category=`` or the user's attributes) or ``cold_start:trending``; fewer than ``few_events``
events -> ``recent_items`` (the registry's ``recent_members``: session kNN, item-kNN and content
from recent items, rank-fused and blended with trending) unless the model's holdout has figures
for the user's segment (then the bandit, ``recent_tier``), as is a user the
model was not trained on whose events all fall within one session (``session_only``); else the
bandit's choice for the user's segment. Recent items include the request's ``context`` and the
read-your-writes events (``Context.recent_events``) the profile does not hold yet, as the most
recent ones (``fresh``).
An explicitly requested algorithm that cannot run for this user falls back along the registry's
chain (``streamrec_shared.algorithms``: als -> itemknn -> ease -> sknn -> content ->
popular).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.catalog import CatalogIndex, popular_in
from streamrec_recommender.serving.context import (
    Context,
    Job,
    Plan,
    Recent,
    Request,
    Result,
    TrendingMirror,
)
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.newitems import NEW_PRODUCT
from streamrec_recommender.serving.policy import (
    PRIOR_STRENGTH,
    ArmStats,
    OfflineEvidence,
    Prior,
    ThompsonBandit,
    assign,
    offline_priors,
)
from streamrec_recommender.serving.ranking import ItemFilter, Ranked
from streamrec_recommender.serving.scorers import SCORERS
from streamrec_shared import profile as profiles
from streamrec_shared.algorithms import REGISTRY

CATEGORY_ATTRIBUTES = ("category", "preferred_category", "favorite_category", "favourite_category")
MAX_RECENT = 50
MAX_SESSION = 20
"""Latest items a session-based scorer reads (``Job.session``)."""
EXACT_SUBSET = 200_000
"""Above this many items even a category filter is searched through the ANN index."""
Mode = tuple[str, float]
"""What to do with a kind of seen item: (``exclude`` | ``downweight`` | ``keep``, factor)."""
Vector = tuple[NDArray[np.float32] | None, str | None]
"""A user vector (f,) float32 or None, and where it came from (see the module docstring)."""


@dataclass(frozen=True)
class _Skipped:
    """Product ids a request must not show: the unavailable set (shared, not copied per
    request) and the request's own exclusions and purchases."""

    unavailable: frozenset[str]
    own: frozenset[str]

    def __contains__(self, product_id: str) -> bool:
        return product_id in self.own or product_id in self.unavailable


@dataclass(frozen=True)
class Settings:
    few_events: int = 5
    exclude_viewed: bool = False
    trending_blend: float = 0.3
    candidates_min: int = 100
    prior_strength: float = PRIOR_STRENGTH
    """Pseudo-impressions of the bandit's offline priors (0: flat priors)."""
    session_gap_s: float = 1800.0
    """A user unknown to the model whose events all lie within this span is session-only:
    served by the ``recent_items`` tier whatever their event count."""


class Engine:
    """Runs the tiers and algorithms; ``search`` is the vector scorer (exact or ANN)."""

    def __init__(
        self, settings: Settings, bandit: ThompsonBandit, rng: np.random.Generator
    ) -> None:
        self.settings = settings
        self.bandit = bandit
        self.rng = rng
        self._memo: dict[str | None, Ranked] = {}
        """``_trending_in`` results for ``_memo_trending`` under ``_memo_model``."""
        self._memo_trending: TrendingMirror | None = None
        self._memo_model: ServingModel | None = None
        self._arms: dict[tuple[bool, bool], tuple[str, ...]] = {}
        """``available`` results for ``_arms_model``."""
        self._arms_model: ServingModel | None = None
        self._evidence: tuple[ServingModel | None, OfflineEvidence] = (
            None,
            OfflineEvidence.from_metrics(None),
        )

    # --- vector search ---------------------------------------------------------------------
    def search(
        self,
        model: ServingModel,
        catalog: CatalogIndex | None,
        query: NDArray[np.float32],
        c: int,
        item_filter: ItemFilter,
        category: str | None,
    ) -> Ranked:
        """Best ``c`` items for a query vector (f,) float32 after the filter."""
        if model.ann is None:
            if model.exact is not None:
                return model.exact.top(query[None, :], [item_filter], c)[0]
            scores = model.item_factors @ query
            return ranking.top_candidates(scores, c, item_filter)
        if category is not None and catalog is not None:
            members = catalog.category_items.get(category)
            if members is None or members.size == 0:
                return Ranked.empty()
            if members.size <= EXACT_SUBSET:  # a category: exact over its members
                scores = model.item_factors[members] @ query
                return item_filter.apply(Ranked.of(members, scores)).head(c)
        want = c + int(item_filter.exclude.size)
        while True:
            found = item_filter.apply(model.ann.search(query, want))
            if len(found) >= c or want >= model.n_items:
                return found.head(c)
            want = min(model.n_items, want * 4)
            if want > 20_000:  # heavily filtered: exact is cheaper than a huge graph search
                scores = model.item_factors @ query
                return ranking.top_candidates(scores, c, item_filter)

    # --- pieces ------------------------------------------------------------------------------
    def candidates(self, k: int) -> int:
        """Candidates an algorithm returns for a top-``k`` request (room for filters, boosts
        and blending)."""
        return max(self.settings.candidates_min, 4 * k)

    def user_vector(
        self, model: ServingModel, prof: profiles.UserProfile | None, user_id: str
    ) -> Vector:
        if prof is not None:
            vec = prof.vector
            if (
                vec is not None
                and prof.model_version == model.version
                and vec.shape[0] == model.dim
                and np.any(vec)
            ):
                return vec, "profile_vector"
            if prof.items:
                folded = model.fold_in(prof.items[:200], prof.weights[:200])
                if folded is not None and np.any(folded):
                    return folded, "fold_in"
        trained = model.user_factor(user_id)
        if trained is not None:
            return trained, "model_vector"
        return None, None

    @staticmethod
    def fresh(req: Request, ctx: Context) -> tuple[str, ...]:
        """Products of the request's context and of the read-your-writes events the profile
        does not hold (yet), most recent first, once each."""
        if not req.context and not ctx.recent_events:
            return ()
        prof = ctx.profile
        have = set(prof.items) if prof is not None else set()
        out: list[str] = []
        for pid in (*req.context, *(e.product_id for e in ctx.recent_events)):
            if pid not in have:
                have.add(pid)
                out.append(pid)
        return tuple(out)

    @staticmethod
    def session(model: ServingModel | None, req: Request, ctx: Context) -> NDArray[np.int64]:
        """The session's latest items in serving space (s,) int64, most recent first: context,
        read-your-writes events, then the profile's views (at most ``MAX_SESSION``)."""
        if model is None:
            return np.empty(0, dtype=np.int64)
        prof = ctx.profile
        views = prof.view_history if prof is not None else ()
        seen: set[int] = set()
        out: list[int] = []
        get = model.index_of.get
        for pid in (*req.context, *(e.product_id for e in ctx.recent_events), *views):
            i = get(pid)
            if i is not None and i not in seen:
                seen.add(i)
                out.append(i)
                if len(out) >= MAX_SESSION:
                    break
        return np.asarray(out, dtype=np.int64)

    @staticmethod
    def recent(
        model: ServingModel | None,
        prof: profiles.UserProfile | None,
        fresh: tuple[str, ...] = (),
        limit: int | None = MAX_RECENT,
    ) -> Recent:
        """Recent weighted items in serving space: (r,) int64 and (r,) float32, weight > 0;
        the ``fresh`` products (not in the profile yet) first, weighing as much as its
        heaviest item; at most ``limit`` (None: every item the profile holds)."""
        if model is None or ((prof is None or not prof.items) and not fresh):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        idx: list[int] = []
        w: list[float] = []
        top = float(prof.weights.max()) if prof is not None and prof.items else 1.0
        for pid in fresh:
            i = model.index_of.get(pid)
            if i is not None and i not in idx:
                idx.append(i)
                w.append(max(top, 1.0))
        items = prof.items if prof is not None else ()
        weights = prof.weights.tolist() if prof is not None else []
        for pid, weight in zip(items, weights, strict=False):
            i = model.index_of.get(pid)
            if i is not None and weight > 0:
                idx.append(i)
                w.append(weight)
                if limit is not None and len(idx) >= limit:
                    break
        return np.asarray(idx, dtype=np.int64), np.asarray(w, dtype=np.float32)

    def popular_ranked(
        self, ctx: Context, model: ServingModel, category: str | None, c: int
    ) -> tuple[Ranked, str]:
        """Trending (live mirror) in serving space, else the model's popularity."""
        live = self._trending_in(ctx.trending, model, category)
        if len(live):
            return live.head(c), "trending"
        return popular_in(model, category).head(c), "model_popularity"

    def _trending_in(
        self, trending: TrendingMirror, model: ServingModel, category: str | None
    ) -> Ranked:
        """A trending list (global or ``category``'s) in the model's item space, products the
        model does not know left out. Kept until the mirror or the model is replaced (a
        refresh makes a new mirror), so requests do not map the same few hundred ids each."""
        if trending is not self._memo_trending or model is not self._memo_model:
            self._memo.clear()
            self._memo_trending, self._memo_model = trending, model
        found = self._memo.get(category)
        if found is None:
            rows = (
                trending.by_category.get(category, ()) if category is not None else trending.global_
            )
            idx, sc = [], []
            for pid, score in rows:
                i = model.index_of.get(pid)
                if i is not None:
                    idx.append(i)
                    sc.append(score)
            found = Ranked.ordered(idx, sc)
            found.indices.flags.writeable = found.scores.flags.writeable = False  # shared
            self._memo[category] = found
        return found

    # --- items the user already had ----------------------------------------------------------
    @staticmethod
    def seen_modes(req: Request, model: ServingModel | None) -> tuple[Mode, Mode] | None:
        """((mode, factor) of the items the user had, of the items the user bought) for this
        request: ``include_seen=true`` keeps both, ``false`` excludes both, else the model's
        measured rule (``ServingModel.seen``). None (a bundle without a rule): purchases
        excluded, views per ``exclude_viewed``."""
        if req.include_seen is True:
            return ("keep", 1.0), ("keep", 1.0)
        if req.include_seen is False:
            return ("exclude", 0.0), ("exclude", 0.0)
        rule = model.seen if model is not None else None
        if rule is None:
            return None
        return (rule.mode, rule.factor), (rule.purchased_mode, rule.purchased_factor)

    @staticmethod
    def seen_ids(prof: profiles.UserProfile) -> tuple[list[str], list[str]]:
        """(products the live profile says the user had but did not buy: its items and view
        history; products the user bought)."""
        bought = set(prof.purchase_history)
        had = [p for p in dict.fromkeys((*prof.items, *prof.view_history)) if p not in bought]
        return had, list(prof.purchase_history)

    def own_exclusions(
        self, req: Request, prof: profiles.UserProfile | None, model: ServingModel | None
    ) -> list[str]:
        """The request's ``exclude=`` plus the seen items its seen modes exclude."""
        exclude: list[str] = list(req.exclude)
        if prof is None:
            return exclude
        modes = self.seen_modes(req, model)
        if modes is None:
            exclude += prof.purchase_history
            if self.settings.exclude_viewed:
                exclude += prof.view_history
            return exclude
        had, bought = self.seen_ids(prof)
        if modes[0][0] == "exclude":
            exclude += had
        if modes[1][0] == "exclude":
            exclude += bought
        return exclude

    def demote_seen(
        self, req: Request, prof: profiles.UserProfile | None, model: ServingModel, ranked: Ranked
    ) -> Ranked:
        """Scores of seen items scaled down where their mode is ``downweight``."""
        modes = self.seen_modes(req, model)
        if modes is None or prof is None or not len(ranked):
            return ranked
        for (mode, factor), ids in zip(modes, self.seen_ids(prof), strict=True):
            if mode == "downweight" and ids:
                ranked = ranking.demote(ranked, model.indices(ids), factor)
        return ranked

    def item_filter(
        self, ctx: Context, model: ServingModel, req: Request
    ) -> tuple[ItemFilter, str | None]:
        prof = ctx.profile
        exclude = self.own_exclusions(req, prof, model)
        category = req.category
        catalog = ctx.catalog
        if catalog is None:
            # No catalog index for this model yet (just swapped in): exclusions cost per
            # request what the unavailable set holds, an (n,) mask what the catalogue holds.
            exclude += ctx.unavailable
            return ItemFilter.build(exclude=model.indices(exclude)), category
        if category is None and not exclude:
            return catalog.base_filter, None
        flt = ItemFilter.build(
            blocked=catalog.blocked,
            allowed=catalog.allowed_for(category) if category is not None else None,
            exclude=model.indices(exclude),
            blocked_idx=catalog.blocked_idx,
        )
        return flt, category

    # --- algorithms (serving-space candidates or None when not computable) ------------------
    def run(self, algorithm: str, job: Job, c: int) -> Ranked | None:
        """The candidates of the scorer registered for ``algorithm`` (``serving.scorers``)."""
        found = SCORERS.get(algorithm)
        return found.score(self, job, c) if found is not None else None

    # --- the whole request -----------------------------------------------------------------
    def plan(
        self,
        req: Request,
        ctx: Context,
        model: ServingModel | None,
        vector: Vector,
        recent: Recent,
        fresh: int = 0,
    ) -> Plan:
        """The tier and algorithm of a request (see the module docstring), given its user
        vector (``user_vector``), recent items (``recent``) and how many of them are not in
        the profile yet (``fresh``: context, read-your-writes)."""
        prof = ctx.profile
        segment: str = profiles.segment_for(prof.event_count) if prof is not None else "new"
        boosted = any(camp.applies(ctx.now, segment) for camp in ctx.campaigns)
        choice = assign(ctx.experiments, req.user_id) if req.algorithm == "auto" else None
        u, vec_source = vector
        has_recent = recent[0].size > 0
        event_count = (prof.event_count if prof is not None else 0) + fresh
        if choice is not None:
            return Plan(choice[1].algorithm, None, choice, segment, boosted)
        if req.algorithm != "auto":
            return Plan(req.algorithm, None, None, segment, boosted)
        if model is None or (u is None and not has_recent):
            return Plan("popular", "cold_start", None, segment, boosted)
        few = 0 < event_count < self.settings.few_events and vec_source != "model_vector"
        if few and self.recent_tier(model, segment):
            return Plan("recent", "recent_items", None, segment, boosted)
        if has_recent and self.session_only(req, ctx, model):
            return Plan("recent", "recent_items", None, segment, boosted)
        stats = ctx.arm_stats.get(segment, {})
        arms = self.available(model, has_vector=u is not None, has_recent=has_recent)
        priors = self.priors(model, segment, stats)
        choice_ = self.bandit.choose(stats, self.rng, available=arms, priors=priors)
        return Plan(choice_, None, None, segment, boosted)

    def recent_tier(self, model: ServingModel, segment: str) -> bool:
        """Whether a user with few events goes to the ``recent_items`` tier: only when the
        published version's holdout has no figures for the user's segment. With them the
        bandit chooses, from that segment's priors: the tier's lead (session kNN) is an arm
        too, so the holdout's evidence decides how often it answers these users instead of
        a fixed rule."""
        return not self.evidence(model).by_segment.get(segment)

    def evidence(self, model: ServingModel | None) -> OfflineEvidence:
        """The offline figures of ``model`` (its bundle's holdout evaluation), kept per model."""
        if self._evidence[0] is not model:
            metrics = model.offline_metrics if model is not None else None
            self._evidence = (model, OfflineEvidence.from_metrics(metrics))
        return self._evidence[1]

    def priors(
        self, model: ServingModel | None, segment: str, stats: Mapping[str, ArmStats]
    ) -> dict[str, Prior]:
        """The bandit's prior of every arm in ``segment`` (``policy.offline_priors``)."""
        return offline_priors(
            self.evidence(model),
            self.bandit.arms,
            stats,
            segment,
            strength=self.settings.prior_strength,
        )

    def session_only(self, req: Request, ctx: Context, model: ServingModel) -> bool:
        """A user the model was not trained on whose events all fall within one session
        (``session_gap_s``): neighbourhood methods over the latest items serve them best."""
        prof = ctx.profile
        if (
            prof is not None
            and prof.last_event_ts - prof.first_event_ts > self.settings.session_gap_s
        ):
            return False
        return req.user_id not in model.user_index

    def als_depth(self, plan: Plan, k: int) -> int:
        """How many exact ALS candidates a planned request reads: its top ``k`` for ``als``
        (filters are applied before; only a campaign's min-max normalisation over the
        candidates needs the full list), ``candidates(k)`` for ``hybrid``'s rank fusion, none
        for the other algorithms and tiers (a fallback to ``als`` scores for itself)."""
        found = SCORERS.get(plan.wanted)
        if plan.tier is not None or found is None or not found.reads_als:
            return 0
        if plan.wanted == "als" and not plan.boosted:
            return k
        return self.candidates(k)

    def prepare(self, req: Request, ctx: Context) -> Job:
        """The request's user vector, recent items, plan and item filter, each once."""
        model = ctx.model
        if model is None:
            recent = self.recent(None, ctx.profile)
            plan = self.plan(req, ctx, None, (None, None), recent)
            return Job(req, ctx, None, None, None, recent, plan, None, req.category, 0)
        u, vec_source = self.user_vector(model, ctx.profile, req.user_id)
        fresh = self.fresh(req, ctx)
        recent = self.recent(model, ctx.profile, fresh)
        plan = self.plan(req, ctx, model, (u, vec_source), recent, len(fresh))
        flt, category = self.item_filter(ctx, model, req)
        depth = self.als_depth(plan, req.k) if u is not None else 0
        session = self.session(model, req, ctx)
        return Job(req, ctx, model, u, vec_source, recent, plan, flt, category, depth,
                   session=session)  # fmt: skip

    def recommend(self, req: Request, ctx: Context) -> Result:
        """``answer(prepare(...))``: one request on its own."""
        return self.answer(self.prepare(req, ctx))

    def answer(self, job: Job) -> Result:
        """Candidates -> rank -> filter -> result of a prepared job."""
        req, ctx, plan = job.req, job.ctx, job.plan
        prof = ctx.profile
        degraded = "degraded:" if ctx.degraded else ""
        wanted, tier, choice, segment = plan.wanted, plan.tier, plan.choice, plan.segment
        exp_name = choice[0].name if choice else None
        var_name = choice[1].name if choice else None
        model, flt = job.model, job.flt
        if model is None or flt is None:
            items, how = self.cold_start_ids(
                ctx, req, prof, req.category or self.attribute_category(ctx, None)
            )
            if not items:
                how = "nothing_trending_yet"  # an empty shop: no model, no recent events
            return Result(
                "popular", f"{degraded}no_model:{how}", items, segment, exp_name, var_name
            )
        u, vec_source, recent, category = job.u, job.vec_source, job.recent, job.category
        c = self.candidates(req.k)
        has_history = u is not None or recent[0].size > 0

        ranked: Ranked | None = None
        algorithm = wanted
        strategy = ""
        cold = tier == "cold_start" or (not has_history and wanted != "popular")
        if cold and not plan.boosted:
            # Live trending by product id, exactly as GET /v1/trending lists it (it may hold
            # products newer than the model).
            cold_cat = category or self.attribute_category(ctx, model)
            items, how = self.cold_start_ids(ctx, req, prof, cold_cat)
            if items:
                strategy = f"cold_start:{how}"
                if choice is not None:
                    strategy = f"experiment:{strategy}"
                return Result(
                    "popular", f"{degraded}{strategy}", items, segment, exp_name, var_name,
                    model.version,
                )  # fmt: skip
        if cold:
            cold_cat = category or self.attribute_category(ctx, model)
            pop, source = self.popular_ranked(ctx, model, cold_cat, c)
            ranked = flt.apply(pop).head(c)
            algorithm = "popular"
            strategy = "cold_start:category_trending" if cold_cat else "cold_start:trending"
            if cold_cat and not category and len(ranked) < req.k:
                glob, source = self.popular_ranked(ctx, model, None, c)
                ranked = ranking.merge_max([ranked, flt.apply(glob).head(c)])
            if source == "model_popularity":
                strategy += ":model"
        elif tier == "recent_items":
            ranked, algorithm = self.recent_items(job, c)
            strategy = "recent_items"
        else:
            for algo in REGISTRY.fallbacks(wanted):
                ranked = self.run(algo, job, c)
                if ranked is not None and len(ranked):
                    algorithm = algo
                    break
            found = SCORERS.get(algorithm)
            basis = found.basis if found is not None else "popular"
            if basis == "vector" and vec_source is not None:
                strategy = vec_source
            elif basis == "recent":
                strategy = "recent_items"
            else:
                strategy = "popular"
            if algorithm != wanted:
                strategy = f"fallback_from_{wanted}:{strategy}"
        if ranked is None:
            ranked = Ranked.empty()
        ranked = self.demote_seen(req, prof, model, ranked)

        ranked = self.boost(ctx, model, ranked, flt, segment, u)
        items = [
            (str(model.item_ids[i]), float(s))
            for i, s in zip(
                ranked.indices[: req.k].tolist(), ranked.scores[: req.k].tolist(), strict=True
            )
        ]
        if len(items) < req.k:
            items = self.top_up(ctx, req, prof, items)
        if model.live_items and any(pid in model.live_items for pid, _ in items):
            strategy = f"{strategy}:{NEW_PRODUCT}"
        if choice is not None:
            strategy = f"experiment:{strategy}"
        return Result(
            algorithm, f"{degraded}{strategy}", items, segment, exp_name, var_name, model.version
        )

    def recent_items(self, job: Job, c: int) -> tuple[Ranked, str]:
        """The ``recent_items`` tier: candidates and the algorithm it is named after.

        With a session (``Job.session``) and a session scorer that finds candidates (the
        registry's heaviest ``recent_members`` entry, ``sknn``), its ranking leads as it is
        (the most recent item weighs most; a rank fusion would flatten exactly that order),
        followed by the fusion of the other members and then trending for the rest. Otherwise
        the members' rank fusion blended with trending."""
        members = REGISTRY.recent_members
        pop = self.run("popular", job, c) or Ranked.empty()
        if members and job.session.size:
            lead_name = members[0][0]
            lead = self.run(lead_name, job, c)
            if lead is not None and len(lead):
                rest = [
                    (part, weight)
                    for name, weight in members[1:]
                    if (part := self.run(name, job, c)) is not None
                ]
                tail = ranking.rank_fusion(rest) if rest else Ranked.empty()
                return ranking.chain([lead, tail, pop]).head(c), lead_name
        parts: list[tuple[Ranked, float]] = []
        algorithm = "popular"  # named after the first member that found candidates
        for name, weight in members:
            part = self.run(name, job, c)
            if part is not None:
                if algorithm == "popular" and len(part):
                    algorithm = name
                parts.append((part, weight))
        base = ranking.rank_fusion(parts) if parts else Ranked.empty()
        return ranking.blend(base, pop, self.settings.trending_blend), algorithm

    def available(
        self, model: ServingModel, *, has_vector: bool = True, has_recent: bool = True
    ) -> tuple[str, ...]:
        """Arms that can really run for this user (so the bandit learns about what it served):
        the served algorithms whose scorer is available, kept per model."""
        if model is not self._arms_model:
            self._arms.clear()
            self._arms_model = model
        key = (has_vector, has_recent)
        found = self._arms.get(key)
        if found is None:
            found = tuple(
                name
                for name in REGISTRY.served
                if name in SCORERS and SCORERS[name].available(model, has_vector, has_recent)
            )
            self._arms[key] = found
        return found

    def attribute_category(self, ctx: Context, model: ServingModel | None) -> str | None:
        """A category to start a new user from: their attributes, if it is a known category."""
        attrs = ctx.attributes or {}
        known = set(ctx.trending.by_category)
        if model is not None:
            known |= set(model.popular_by_category)
        if ctx.catalog is not None:
            known |= set(ctx.catalog.category_items)
        for key in CATEGORY_ATTRIBUTES:
            value = attrs.get(key)
            if isinstance(value, str) and value in known:
                return value
        interests = attrs.get("interests")
        if isinstance(interests, list):
            for value in interests:
                if isinstance(value, str) and value in known:
                    return value
        return None

    def boost(
        self,
        ctx: Context,
        model: ServingModel,
        ranked: Ranked,
        flt: ItemFilter,
        segment: str,
        u: NDArray[np.float32] | None,
    ) -> Ranked:
        if not ctx.campaigns:
            return ranked
        groups = ctx.catalog.category_items if ctx.catalog is not None else {}
        idx, amount = ranking.campaign_boosts(
            ctx.campaigns,
            now=ctx.now or time.time(),
            segment=segment,
            index_of=model.index_of,
            category_items=groups,
        )
        if idx.size == 0:
            return ranked
        keep = flt.keep(idx)
        idx, amount = idx[keep], amount[keep]
        raw = model.item_factors[idx] @ u if u is not None and idx.size <= 200_000 else None
        return ranking.apply_boosts(ranked, idx, amount, raw)

    def trending_ids(
        self, ctx: Context, req: Request, prof: profiles.UserProfile | None
    ) -> tuple[list[tuple[str, float]], str]:
        """Trending by product id (no model needed): filtered, best first."""
        skip = self._skipped(ctx, req, prof)
        category = req.category or self.attribute_category(ctx, None)
        rows = ctx.trending.by_category.get(category, ()) if category else ctx.trending.global_
        how = "category_trending" if category else "trending"
        if not rows and not req.category:
            rows, how = ctx.trending.global_, "trending"
        return [(p, s) for p, s in rows if p not in skip][: req.k], how

    def fallback_ids(
        self, ctx: Context, req: Request, prof: profiles.UserProfile | None
    ) -> tuple[list[tuple[str, float]], str]:
        """The best answer that needs no scoring: live trending (``trending_ids``), else the
        popularity list of the model in memory (``"model_popularity"``), same filters."""
        items, how = self.trending_ids(ctx, req, prof)
        model = ctx.model
        if items or model is None:
            return items, how
        skip = self._skipped(ctx, req, prof)
        blocked = (
            ctx.catalog.blocked if ctx.catalog is not None and ctx.catalog.fits(model) else None
        )
        ranked = popular_in(model, req.category)
        for i, s in zip(ranked.indices.tolist(), ranked.scores.tolist(), strict=True):
            if blocked is not None and blocked[i]:
                continue
            pid = str(model.item_ids[i])
            if pid not in skip:
                items.append((pid, s))
                if len(items) >= req.k:
                    break
        return items, "model_popularity"

    def _skipped(self, ctx: Context, req: Request, prof: profiles.UserProfile | None) -> _Skipped:
        return _Skipped(ctx.unavailable, frozenset(self.own_exclusions(req, prof, ctx.model)))

    def cold_start_ids(
        self,
        ctx: Context,
        req: Request,
        prof: profiles.UserProfile | None,
        cold_cat: str | None,
    ) -> tuple[list[tuple[str, float]], str]:
        """Filled up to k: live trending in the category (``category=`` or the user's
        attributes), then the model's popularity in it, then global trending, then the model's
        global popularity; each source ranked below the previous one. ``how`` names the first
        source and, after ``+``, the ones that filled it (``category_trending+model_category``);
        ``category_trending:model`` / ``trending:model`` when nothing live was found."""
        skip = self._skipped(ctx, req, prof)
        model = ctx.model
        blocked = (
            ctx.catalog.blocked
            if model is not None and ctx.catalog is not None and ctx.catalog.fits(model)
            else None
        )
        items: list[tuple[str, float]] = []
        have: set[str] = set()
        parts: list[str] = []

        def add(rows: list[tuple[str, float]] | tuple[tuple[str, float], ...], name: str) -> None:
            floor = min((sc for _, sc in items), default=None)
            added = 0
            for p, sc in rows:
                if len(items) >= req.k:
                    break
                if p in have or p in skip:
                    continue
                if floor is not None:  # below what earlier sources found, order kept
                    floor -= 1e-6
                    sc = min(sc, floor)
                items.append((p, sc))
                have.add(p)
                added += 1
            if added:
                parts.append(name)

        def model_rows(category: str | None) -> list[tuple[str, float]]:
            if model is None:
                return []
            ranked = popular_in(model, category)
            out: list[tuple[str, float]] = []
            for i, sc in zip(ranked.indices.tolist(), ranked.scores.tolist(), strict=True):
                if blocked is not None and blocked[i]:
                    continue
                out.append((str(model.item_ids[i]), float(sc)))
                if len(out) >= 4 * req.k + len(skip.own):
                    break
            return out

        if cold_cat is not None:
            add(ctx.trending.by_category.get(cold_cat, ()), "category_trending")
            if len(items) < req.k:
                add(model_rows(cold_cat), "model_category")
        if len(items) < req.k:
            add(ctx.trending.global_, "trending")
        if len(items) < req.k:
            add(model_rows(None), "model_popularity")
        fresh = self._newest_live(ctx, cold_cat, have | set(skip.own), skip)
        if fresh is not None:  # the last slot shows what arrived since the model
            if len(items) >= req.k:
                items.pop()
            items.append((fresh, min((sc for _, sc in items), default=1.0) - 1e-6))
            parts.append(NEW_PRODUCT)
        first = "category_trending" if cold_cat is not None else "trending"
        if not any(p in ("category_trending", "trending") for p in parts):
            new = f"+{NEW_PRODUCT}" if NEW_PRODUCT in parts else ""
            return items, f"{first}:model{new}" if parts else first  # nothing live: the model's
        if parts[0] != first:
            parts.insert(0, first)  # asked for the category, it had nothing live
        return items, "+".join(parts)

    @staticmethod
    def _newest_live(
        ctx: Context, category: str | None, shown: set[str], skip: _Skipped
    ) -> str | None:
        """The product appended last to the model since it was loaded (``serving.newitems``),
        in ``category`` when one is asked for, that the answer does not show yet."""
        model, catalog = ctx.model, ctx.catalog
        if model is None or not model.live_items:
            return None
        if category is not None:
            if catalog is None or not catalog.fits(model):
                return None
            members = catalog.category_items.get(category)
            if members is None or members.size == 0:
                return None
            candidates = members[members >= model.n_items - len(model.live_items)]
            if catalog.blocked is not None and candidates.size:
                candidates = candidates[~catalog.blocked[candidates]]
        else:
            idx = [model.index_of[p] for p in model.live_items]
            candidates = np.asarray(sorted(idx), dtype=np.int64)
        for i in candidates[::-1].tolist():
            pid = str(model.item_ids[i])
            if pid in model.live_items and pid not in shown and pid not in skip:
                return pid
        return None

    def top_up(
        self,
        ctx: Context,
        req: Request,
        prof: profiles.UserProfile | None,
        items: list[tuple[str, float]],
    ) -> list[tuple[str, float]]:
        """Fill a short list from trending (same filters), scores below the last one."""
        have = {p for p, _ in items}
        floor = min((s for _, s in items), default=0.0)
        extra, _ = self.trending_ids(
            ctx, Request(req.user_id, req.k * 3, "popular", req.category, req.exclude), prof
        )
        model = ctx.model
        out = list(items)
        for pid, _score in extra:
            if pid in have:
                continue
            if model is not None and ctx.catalog is not None:
                i = model.index_of.get(pid)
                if i is not None and ctx.catalog.blocked[i]:
                    continue
            floor -= 1e-3
            out.append((pid, floor))
            if len(out) >= req.k:
                break
        return out
