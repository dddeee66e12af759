#!/bin/sh
# Write the app's runtime config.json (served at /config.json) before nginx starts.
set -eu
out=/tmp/streamrec-web-config.json
if [ -f /etc/streamrec-web/config.json ]; then
    cp /etc/streamrec-web/config.json "$out"
    exit 0
fi
cat > "$out" <<JSON
{
  "ingestUrl": "${STREAMREC_WEB_INGEST_URL:-http://localhost:8000}",
  "recommenderUrl": "${STREAMREC_WEB_RECOMMENDER_URL:-http://localhost:8001}",
  "trainerUrl": "${STREAMREC_WEB_TRAINER_URL:-http://localhost:8002}",
  "publishableKey": "${STREAMREC_WEB_PUBLISHABLE_KEY:-}"
}
JSON
