"""Whether a ``STREAMREC_<GROUP>__<KEY>`` variable names a setting of a service (the docs',
manifests' and local stack's variables are checked with it)."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel


def is_setting(model: type[BaseModel], variable: str) -> bool:
    """``variable`` (``STREAMREC_`` prefix, ``__`` between levels) names a field of ``model``
    or of a group nested in it (through optionals and lists too)."""
    return _resolves(model, variable.removeprefix("STREAMREC_").lower().split("__"))


def nested_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model class ``model`` nests, at any depth: its settings groups and theirs."""
    found: set[type[BaseModel]] = set()
    pending = [model]
    while pending:
        for info in pending.pop().model_fields.values():
            for t in _models_in(info.annotation):
                if t not in found:
                    found.add(t)
                    pending.append(t)
    return found


def _resolves(model: type[BaseModel], path: list[str]) -> bool:
    info = model.model_fields.get(path[0])
    if info is None:
        return False
    if len(path) == 1:
        return True
    return any(_resolves(t, path[1:]) for t in _models_in(info.annotation))


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The model classes in a field's annotation (itself, or inside optionals and lists)."""
    stack = [annotation]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            yield t
        else:
            stack.extend(typing.get_args(t))
