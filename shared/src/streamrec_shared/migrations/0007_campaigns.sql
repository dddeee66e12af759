-- Campaigns (the recommender's marketing boosts) live here, as experiments do; the Redis hash
-- sr:campaigns and each pod's memory are only caches of this table (a Redis flush loses nothing).
-- definition: the campaign as the API shows it (boost, start, end, product_ids, categories,
-- segment, enabled; name repeated).
CREATE TABLE IF NOT EXISTS campaigns (
    name         text PRIMARY KEY,
    definition   jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Kinds of definitions whose earlier Redis-only copy was adopted into their table once (the
-- first recommender that starts after this migration copies sr:campaigns into campaigns, so
-- an upgrade loses nothing; a row here makes it happen exactly once).
CREATE TABLE IF NOT EXISTS definition_adoptions (
    kind         text PRIMARY KEY,
    adopted_at   timestamptz NOT NULL DEFAULT now()
);
