-- Product search as the pg_trgm documentation suggests for spelling correction: a dictionary
-- of the catalog's words with a trigram index corrects each query word (a few candidates per
-- word, cheap on a table of short words); the products are then found by full-text match of
-- the corrected words (GIN tsvector index), instead of trigram-scoring every product that
-- shares trigrams with the whole query (migration 0003), which cost ~100 ms at 100k products.
--
-- search_tsv: the words of name, category and the attribute VALUES (not the JSON keys or
-- punctuation), 'simple' configuration (lower-cased, no stemming, no stop words).
ALTER TABLE products ADD COLUMN IF NOT EXISTS search_tsv tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(category_id, ''))
    || jsonb_to_tsvector('simple', attributes, '["string", "numeric"]')
) STORED;
CREATE INDEX IF NOT EXISTS products_search_tsv_idx ON products USING gin (search_tsv)
    WITH (fastupdate = off);
-- The whole-text column and trigram index of 0003 are no longer read (dropping the column
-- drops its index too); they only slowed catalog writes.
DROP INDEX IF EXISTS products_search_trgm_idx;
ALTER TABLE products DROP COLUMN IF EXISTS search_text;

-- The distinct words of search_tsv. Words of deleted products stay (a stale word only yields
-- a correction candidate that matches nothing).
CREATE TABLE IF NOT EXISTS search_words (word text PRIMARY KEY);
CREATE INDEX IF NOT EXISTS search_words_trgm_idx ON search_words USING gin (word gin_trgm_ops)
    WITH (fastupdate = off);

-- Statement-level triggers with transition tables, so a COPY or a batch upsert of products adds
-- its new words in one INSERT; existing words cost one index probe (ON CONFLICT DO NOTHING).
-- Transition tables allow one event per trigger and no UPDATE OF column list: two triggers.
CREATE OR REPLACE FUNCTION search_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT DISTINCT w FROM changed_products, unnest(tsvector_to_array(search_tsv)) AS w
    WHERE length(w) BETWEEN 2 AND 40
    ORDER BY w  -- one lock order for concurrent writers of the same new words
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS products_search_words_ins ON products;
CREATE TRIGGER products_search_words_ins AFTER INSERT ON products
    REFERENCING NEW TABLE AS changed_products
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_add();
-- Updates (stock, price, activation: most of them) whose searchable text is unchanged add nothing.
CREATE OR REPLACE FUNCTION search_words_add_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT DISTINCT w
    FROM changed_products AS n
    LEFT JOIN old_products AS o ON o.product_id = n.product_id AND o.search_tsv = n.search_tsv,
        unnest(tsvector_to_array(n.search_tsv)) AS w
    WHERE o.product_id IS NULL AND length(w) BETWEEN 2 AND 40
    ORDER BY w
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS products_search_words_upd ON products;
CREATE TRIGGER products_search_words_upd AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_products NEW TABLE AS changed_products
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_add_updated();

INSERT INTO search_words (word)
SELECT DISTINCT w FROM products, unnest(tsvector_to_array(search_tsv)) AS w
WHERE length(w) BETWEEN 2 AND 40
ON CONFLICT DO NOTHING;
