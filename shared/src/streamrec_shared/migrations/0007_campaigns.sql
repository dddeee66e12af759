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
