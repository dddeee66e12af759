"""Whether a ``STREAMREC_<GROUP>__<KEY>`` variable names a setting of a service (the docs',
manifests' and local stack's variables are checked with it)."""

from __future__ import annotations

import typing

from pydantic import BaseModel


def is_setting(model: type[BaseModel], variable: str) -> bool:
    """``variable`` (``STREAMREC_`` prefix, ``__`` between levels) names a field of ``model``
    or of a group nested in it (through optionals and lists too)."""
    return _resolves(model, variable.removeprefix("STREAMREC_").lower().split("__"))


def _resolves(model: type[BaseModel], path: list[str]) -> bool:
    info = model.model_fields.get(path[0])
    if info is None:
        return False
    if len(path) == 1:
        return True
    stack = [info.annotation]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if _resolves(t, path[1:]):
                return True
        else:
            stack.extend(typing.get_args(t))
    return False
