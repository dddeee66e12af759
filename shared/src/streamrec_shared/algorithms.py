"""The algorithms, named once: every list of algorithm names in the services derives from here.

An ``Algorithm`` entry says what the name means to every service; the code lives in one module
per side, which registers itself under the same name:

- trainer: ``streamrec_trainer/models/<name>.py`` registers its fitter, parameters, bundle
  arrays and offline-evaluation adapters (``streamrec_trainer.models.registry``);
- recommender: ``streamrec_recommender/serving/algorithms/<name>.py`` registers its scorer
  (``streamrec_recommender.serving.scorers``).

Derived here: the recommender's accepted ``algorithm=`` values (``served`` plus ``auto``), the
default bandit arms (``arms``), the rec-id code of each algorithm (``codes``), the fallback
chain of an explicitly requested algorithm (``fallbacks``), the members of ``hybrid``'s rank
fusion with their default weights (``hybrid_members``; the trainer may ship weights chosen on
its holdout with a model, ``streamrec_trainer.models.hybrid``) and those of the
``recent_items`` tier (``recent_members``, heaviest first: the tier's answer is named after
the first that found candidates). Adding an algorithm: one ``register`` call (or one entry in
``BUILTIN``) plus its module on each side. ``Plugins`` is how each side collects
its modules' parts by name.

Pure: no I/O, no numpy.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

AUTO = "auto"
"""The request value that lets the policy choose (experiments, else the bandit)."""
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Algorithm:
    """What one algorithm name means across the services.

    code: one character in rec ids (``streamrec_recommender.online``), unique.
    served: the recommender answers ``algorithm=<name>`` with it.
    arm: a default arm of the ``auto`` policy's bandit.
    fallback: position in the chain an unavailable explicit request falls back along
    (lower first; None: never a fallback).
    hybrid_weight: default weight of its list in ``hybrid``'s rank fusion (0: not a member).
    recent_weight: weight of its list in the ``recent_items`` tier (users with a few events:
    rank fusion of these lists, blended with trending; 0: not a member).
    trained: the trainer fits it (``hybrid`` only combines the others).
    """

    name: str
    code: str
    served: bool = True
    arm: bool = True
    fallback: int | None = None
    hybrid_weight: float = 0.0
    recent_weight: float = 0.0
    trained: bool = True


BUILTIN: tuple[Algorithm, ...] = (
    Algorithm("als", "a", fallback=0, hybrid_weight=1.0),
    Algorithm("itemknn", "i", fallback=1, hybrid_weight=0.8, recent_weight=1.0),
    Algorithm("content", "c", fallback=2, hybrid_weight=0.5, recent_weight=0.6),
    Algorithm("popular", "p", arm=False, fallback=3),
    Algorithm("hybrid", "h", trained=False),
    Algorithm("ease", "e", fallback=1, hybrid_weight=1.0),
    Algorithm("sknn", "s", fallback=1, recent_weight=2.0),
)
"""The algorithms this repository ships. ``ease`` is served from its sparsified weights when
the catalogue fits its ``max_items`` (unavailable otherwise); ``sknn`` (session kNN over the
latest items) leads the ``recent_items`` tier and follows the neighbourhood models in the
fallback chain for users with recent items but no vector."""


class Registry:
    """Algorithm entries by name, with the derived lists cached (read per request)."""

    def __init__(self, entries: tuple[Algorithm, ...] = ()) -> None:
        self._entries: dict[str, Algorithm] = {}
        self.served: tuple[str, ...] = ()
        """Names the recommender answers, registry order."""
        self.accepted: frozenset[str] = frozenset()
        """Values of ``algorithm=``: ``served`` and ``auto``."""
        self.arms: tuple[str, ...] = ()
        self.codes: dict[str, str] = {}
        """name -> rec-id code; updated in place, so a module may bind it once."""
        self.by_code: dict[str, str] = {}
        self.fallback_order: tuple[str, ...] = ()
        self.hybrid_members: tuple[tuple[str, float], ...] = ()
        self.recent_members: tuple[tuple[str, float], ...] = ()
        for entry in entries:
            self.register(entry)

    def register(self, entry: Algorithm) -> Algorithm:
        """Add (or replace, same name) an entry; the derived lists follow at once."""
        if not _NAME.match(entry.name) or entry.name == AUTO:
            raise ValueError(f"bad algorithm name {entry.name!r}")
        if len(entry.code) != 1 or not entry.code.isalnum():
            raise ValueError(f"algorithm {entry.name!r}: code must be one letter or digit")
        for other in self._entries.values():
            if other.code == entry.code and other.name != entry.name:
                raise ValueError(f"code {entry.code!r} already used by {other.name!r}")
        self._entries[entry.name] = entry
        self._derive()
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._derive()

    def _derive(self) -> None:
        entries = list(self._entries.values())
        self.served = tuple(e.name for e in entries if e.served)
        self.accepted = frozenset((AUTO, *self.served))
        self.arms = tuple(e.name for e in entries if e.served and e.arm)
        self.codes.clear()
        self.codes.update((e.name, e.code) for e in entries)
        self.by_code.clear()
        self.by_code.update((e.code, e.name) for e in entries)
        chain = sorted((e for e in entries if e.fallback is not None and e.served),
                       key=lambda e: e.fallback or 0)  # fmt: skip
        self.fallback_order = tuple(e.name for e in chain)
        self.hybrid_members = tuple(
            (e.name, e.hybrid_weight) for e in entries if e.hybrid_weight > 0 and e.served
        )
        recent = sorted((e for e in entries if e.recent_weight > 0 and e.served),
                        key=lambda e: -e.recent_weight)  # fmt: skip
        self.recent_members = tuple((e.name, e.recent_weight) for e in recent)

    def __getitem__(self, name: str) -> Algorithm:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def trained(self) -> tuple[str, ...]:
        return tuple(e.name for e in self._entries.values() if e.trained)

    def fallbacks(self, wanted: str) -> tuple[str, ...]:
        """``wanted`` first, then the fallback chain without it."""
        return (wanted, *(a for a in self.fallback_order if a != wanted))


REGISTRY = Registry(BUILTIN)
"""The one registry every service reads."""


def register(entry: Algorithm) -> Algorithm:
    """Add an algorithm to ``REGISTRY`` (a plug-in's one registry entry)."""
    return REGISTRY.register(entry)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=_Named)


class Plugins(Generic[P]):
    """One service's part of each algorithm by name (the trainer's fitters, the recommender's
    scorers): every module of ``package`` registers its part when imported."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.by_name: dict[str, P] = {}

    def register(self, part: P) -> P:
        """Add (or replace, same name) ``part``; returns it (usable as a decorator's result)."""
        self.by_name[part.name] = part
        return part

    def load_builtin(self) -> None:
        """Import every module of ``package`` (each registers itself; imported once)."""
        root = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(root.__path__):
            importlib.import_module(f"{self.package}.{info.name}")
