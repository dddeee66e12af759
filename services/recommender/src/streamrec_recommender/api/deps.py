"""FastAPI dependencies: the app's runtime objects as typed ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from streamrec_recommender.runtime.recommender import Recommender


async def get_recommender(request: Request) -> Recommender:
    recommender: Recommender = request.app.state.recommender
    return recommender


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
