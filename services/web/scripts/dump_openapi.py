"""Write the OpenAPI documents of ingest, recommender and trainer to services/web/openapi/.

Run from the repo root: ``uv run python services/web/scripts/dump_openapi.py``; then
``npm run gen:api`` in services/web (also run by every build) turns them into TypeScript types
in src/api/generated/, which is gitignored.
Building an app does not open its connections (that happens in the lifespan).
"""

from __future__ import annotations

import json
from pathlib import Path

from streamrec_ingest.app import create_app as ingest_app
from streamrec_recommender.api.app import create_app as recommender_app
from streamrec_trainer.app import create_app as trainer_app

OUT = Path(__file__).resolve().parents[1] / "openapi"

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, factory in (
        ("ingest", ingest_app),
        ("recommender", recommender_app),
        ("trainer", trainer_app),
    ):
        doc = factory().openapi()
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"{name}: {len(doc.get('paths', {}))} paths")
