-- DELETE /v1/users/{user_id} (ingest): the user ids erased, so that events of theirs archived
-- after the erasure (still in flight in Kafka) are never trained on, and the orders' user is
-- replaced by the 'erased user' row (whitespace: no API id can be it).
CREATE TABLE erased_users (
    user_id      text PRIMARY KEY,
    erased_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO users (user_id) VALUES ('erased user') ON CONFLICT DO NOTHING;
