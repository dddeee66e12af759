"""Typo-tolerant product search in Postgres: spelling correction, then a full-text match.

The pg_trgm documentation's recipe for spelling correction (migration 0006): ``search_words``
holds the distinct words of the catalog's searchable text (name, category, attribute values),
kept current by triggers on ``products``, with a GIN trigram index. A search

1. splits the query into words and, in one round trip, takes each word's correction candidates:
   the word itself when the catalog has it, and the few most similar dictionary words
   (``word % $w``, trigram similarity >= ``CANDIDATE_THRESHOLD``, the best ``CANDIDATES``);
2. matches products whose ``search_tsv`` (a generated ``tsvector``, GIN index) has, for EVERY
   query word, one of its candidates, and scores them by the candidates they hold: the
   correction similarities weighted by each word's rarity (from the planner's statistics of
   ``search_tsv``, ``pg_stats.most_common_elems``), normalised to [0, 1] (1 = every word found
   as typed);
3. when that finds fewer than asked and the query has several words, fills up with products
   that hold the candidates of only SOME of the selective (not common) words, scored lower.

Each match reads at most ``MATCH_CAP`` rows before ordering, so a query of very common words
stays bounded. Words the dictionary cannot correct at all are left out of the match (the other
words still find products); a query with no usable word finds nothing.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

Fetch = Callable[..., Awaitable[list[asyncpg.Record]]]
"""``fetch(sql, *args)`` of the caller (which maps connection failures to its own error)."""

MAX_WORDS = 8
"""Query words used (the first ones); more only cost time."""
CANDIDATES = 3
"""Correction candidates per query word besides the word itself."""
CANDIDATE_THRESHOLD = 0.3
"""pg_trgm similarity a dictionary word needs to be a candidate (``pg_trgm.similarity_threshold``
of the search connections): one typo in a six-letter word scores about 0.4-0.7."""
CANDIDATE_WINDOW = 0.1
"""Candidates scoring more than this below the word's best candidate are dropped."""
EXACT_ALTERNATIVE = 0.6
"""When the catalog has the word as typed, other candidates need at least this similarity."""
COMMON_FREQUENCY = 0.02
"""A word in more than this share of the products is common: a typo is not corrected into it
(unless it is the only candidate), and the partial-match fill does not use it."""
MATCH_CAP = 2000
"""Rows a match reads before ordering (bounds queries made of very common words)."""
STATS_TTL_S = 300.0
"""How long the word frequencies read from ``pg_stats`` are reused."""

_WORD = re.compile(r"[^\W_]+")

_CANDIDATES_SQL = f"""
SELECT q.n, c.word, c.sim
FROM unnest($1::text[]) WITH ORDINALITY AS q(t, n)
CROSS JOIN LATERAL (
    SELECT word, similarity(word, q.t) AS sim FROM search_words
    WHERE word % q.t
    ORDER BY sim DESC, word
    LIMIT {CANDIDATES + 1}
) AS c
"""  # noqa: S608 (f-strings here hold constants and $n placeholders; values are parameters)
_STATS_SQL = """
SELECT most_common_elems::text::text[] AS elems, most_common_elem_freqs AS freqs
FROM pg_stats
WHERE tablename = 'products' AND attname = 'search_tsv' AND schemaname = current_schema()
"""
_COLUMNS = "product_id, name, category_id, price, in_stock, active, attributes, description"


def query_words(text: str) -> list[str]:
    """The distinct words (letters and digits, lower-cased) of ``text``, at most
    ``MAX_WORDS``, in order; one-letter words are dropped (trigrams cannot correct them)."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if len(w) >= 2 and w not in out:
            out.append(w)
    return out[:MAX_WORDS]


def lexeme(word: str) -> str:
    """``word`` as a quoted tsquery operand."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class WordFrequencies:
    """Share of products holding each common word (``pg_stats`` of ``search_tsv``); words not
    listed are rarer than ``floor``."""

    freq: dict[str, float] = field(default_factory=dict)
    floor: float = 0.0
    read_at: float = float("-inf")

    def of(self, word: str) -> float:
        return self.freq.get(word, self.floor)

    def weight(self, word: str) -> float:
        """Inverse document frequency, at least 1 (words with no statistics weigh most)."""
        f = self.of(word)
        return max(math.log(1.0 / f), 1.0) if f > 0 else 1.0


@dataclass
class Term:
    """A query word and its correction candidates [(dictionary word, similarity)], best first."""

    word: str
    candidates: list[tuple[str, float]]
    weight: float
    common: bool

    def tsquery(self, *, best_only: bool = False) -> str:
        best = self.candidates[0][1]
        cands = [c for c, sim in self.candidates if sim >= best or not best_only]
        return "(" + " | ".join(lexeme(c) for c in cands) + ")"

    @property
    def alternatives(self) -> bool:
        """Whether some candidate scores below the best."""
        return self.candidates[-1][1] < self.candidates[0][1]


def best_score(terms: Sequence[Term]) -> float:
    """Score of a product holding every term's best candidate (see ``score_sql``)."""
    total = sum(t.weight for t in terms) or 1.0
    return sum(t.weight * t.candidates[0][1] for t in terms) / total


def choose_candidates(
    word: str, found: Sequence[tuple[str, float]], freqs: WordFrequencies
) -> list[tuple[str, float]]:
    """The candidates of ``word`` to match, from the dictionary's most similar words ``found``
    (best first): the word as typed if the catalog has it plus only close alternatives; else
    the best ones within ``CANDIDATE_WINDOW`` of the best, without common words unless one is
    the best candidate."""
    ranked = sorted(found, key=lambda c: (-c[1], c[0]))
    if not ranked:
        return []
    exact = [c for c in ranked if c[0] == word]
    if exact:
        others = [c for c in ranked if c[0] != word and c[1] >= EXACT_ALTERNATIVE]
        return [(word, 1.0), *others[: CANDIDATES - 1]]
    best = ranked[0][1]
    close = [c for c in ranked if c[1] >= best - CANDIDATE_WINDOW]
    rare = [c for c in close if freqs.of(c[0]) <= COMMON_FREQUENCY]
    return (rare or close[:1])[:CANDIDATES]


def plan(
    words: Sequence[str], found: dict[int, list[tuple[str, float]]], freqs: WordFrequencies
) -> list[Term]:
    """Terms of the query words that have candidates (``found`` is keyed by 1-based word
    position, as the candidates query returns them)."""
    terms = []
    for n, word in enumerate(words, start=1):
        cands = choose_candidates(word, found.get(n, []), freqs)
        if not cands:
            continue
        top = max(freqs.of(c) for c, _ in cands)
        terms.append(Term(word, cands, freqs.weight(cands[0][0]), top > COMMON_FREQUENCY))
    return terms


def score_sql(terms: Sequence[Term], first_param: int) -> tuple[str, list[str]]:
    """SQL of a product's score over ``search_tsv`` and its parameters (candidate tsqueries,
    numbered from ``first_param``): sum over terms of weight * similarity of the best candidate
    the product holds, over the sum of the weights."""
    total = sum(t.weight for t in terms) or 1.0
    params: list[str] = []
    parts = []
    for t in terms:
        whens = []
        for cand, sim in t.candidates:
            params.append(lexeme(cand))
            whens.append(f"WHEN search_tsv @@ ${first_param + len(params) - 1}::tsquery "
                         f"THEN {sim * t.weight / total:.6f}")  # fmt: skip
        parts.append(f"CASE {' '.join(whens)} ELSE 0 END")
    return " + ".join(parts), params


def match_sql(terms: Sequence[Term]) -> tuple[str, list[str]]:
    """SQL of a match and its extra parameters. Fixed parameters: $1 tsquery, $2 category or
    NULL, $3 limit, $4 include inactive, $5 product ids to leave out."""
    score, params = score_sql(terms, 6)
    sql = f"""
SELECT {_COLUMNS}, ({score})::real AS similarity
FROM (
    SELECT {_COLUMNS}, search_tsv FROM products
    WHERE search_tsv @@ $1::tsquery AND in_catalog
      AND ($2::text IS NULL OR category_id = $2) AND (active OR $4)
      AND product_id <> ALL($5::text[])
    LIMIT {MATCH_CAP}
) AS m
ORDER BY similarity DESC, product_id
LIMIT $3
"""  # noqa: S608
    return sql, params


_BEST_SQL = f"""
SELECT {_COLUMNS}, $5::real AS similarity FROM products
WHERE search_tsv @@ $1::tsquery AND in_catalog
  AND ($2::text IS NULL OR category_id = $2) AND (active OR $4)
LIMIT $3
"""  # noqa: S608
"""Products holding every term's best candidates: all score ``best_score``, so no ordering,
and the scan stops after ``limit`` rows."""


@dataclass
class CatalogSearch:
    """Product search over the caller's ``fetch`` (see the module docstring)."""

    freqs: WordFrequencies = field(default_factory=WordFrequencies)

    async def frequencies(self, fetch: Fetch) -> WordFrequencies:
        now = time.monotonic()
        if now - self.freqs.read_at < STATS_TTL_S:
            return self.freqs
        rows = await fetch(_STATS_SQL)
        freqs = WordFrequencies(read_at=now)
        if rows and rows[0]["elems"] is not None:
            elems: list[str] = list(rows[0]["elems"])
            values: list[float] = list(rows[0]["freqs"])
            freqs.freq = dict(zip(elems, values[: len(elems)], strict=True))
            # after the per-element frequencies: the minimum, the maximum, the null share
            freqs.floor = values[len(elems)] if len(values) > len(elems) else min(values)
        self.freqs = freqs
        return freqs

    async def terms(self, fetch: Fetch, text: str) -> list[Term]:
        words = query_words(text)
        if not words:
            return []
        freqs = await self.frequencies(fetch)
        found: dict[int, list[tuple[str, float]]] = {}
        for r in await fetch(_CANDIDATES_SQL, words):
            found.setdefault(int(r["n"]), []).append((r["word"], float(r["sim"])))
        return plan(words, found, freqs)

    async def search(
        self,
        fetch: Fetch,
        text: str,
        *,
        category: str | None,
        limit: int,
        include_inactive: bool,
    ) -> list[asyncpg.Record]:
        """Up to ``limit`` products for ``text``, best first, each with ``similarity``."""
        terms = await self.terms(fetch, text)
        if not terms:
            return []
        best = " & ".join(t.tsquery(best_only=True) for t in terms)
        rows = await fetch(_BEST_SQL, best, category, limit, include_inactive, best_score(terms))
        if len(rows) >= limit:
            return rows
        sql, params = match_sql(terms)
        if any(t.alternatives for t in terms):  # products holding some lesser candidates
            every = " & ".join(t.tsquery() for t in terms)
            seen = [r["product_id"] for r in rows]
            rows += await fetch(
                sql, every, category, limit - len(rows), include_inactive, seen, *params
            )
        selective = [t for t in terms if not t.common]
        if len(rows) >= limit or len(terms) < 2 or not selective:
            return rows
        some = " | ".join(t.tsquery() for t in selective)
        seen = [r["product_id"] for r in rows]
        rows += await fetch(sql, some, category, limit - len(rows), include_inactive, seen, *params)
        return rows


def describe(terms: Sequence[Term]) -> list[dict[str, Any]]:
    """The corrections of a query, for logs and EXPLAIN scripts."""
    return [{"word": t.word, "candidates": t.candidates, "weight": round(t.weight, 3),
             "common": t.common} for t in terms]  # fmt: skip
