-- Typo-tolerant product search (GET /v1/products/search on the recommender): trigram matching
-- over name, category and attributes. pg_trgm is a trusted extension (PostgreSQL >= 13): the
-- database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE products ADD COLUMN search_text text GENERATED ALWAYS AS (
    lower(coalesce(name, '') || ' ' || coalesce(category_id, '') || ' ' || attributes::text)
) STORED;
CREATE INDEX products_search_trgm_idx ON products USING gin (search_text gin_trgm_ops);
