-- streamrec schema v1. Applied once, in a transaction, by streamrec_shared.postgres.migrate().
CREATE TABLE categories (
    category_id  text PRIMARY KEY,
    parent_id    text REFERENCES categories (category_id),
    name         text NOT NULL
);

CREATE TABLE products (
    product_id   text PRIMARY KEY,
    name         text,
    category_id  text REFERENCES categories (category_id),
    price        numeric(14, 4) CHECK (price >= 0),
    in_stock     boolean NOT NULL DEFAULT true,
    active       boolean NOT NULL DEFAULT true,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    description  text NOT NULL DEFAULT '',
    -- false for rows created only because an event referenced the product before the catalog did
    in_catalog   boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_category_idx ON products (category_id);

CREATE TABLE users (
    user_id      text PRIMARY KEY,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    order_id     text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users (user_id),
    ts           timestamptz NOT NULL,
    total        numeric(16, 4) NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_user_ts_idx ON orders (user_id, ts);

CREATE TABLE order_items (
    order_id     text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no      integer NOT NULL,
    product_id   text NOT NULL REFERENCES products (product_id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    price        numeric(14, 4) NOT NULL CHECK (price >= 0),
    event_id     text NOT NULL UNIQUE,
    PRIMARY KEY (order_id, line_no)
);

-- The durable archive of every accepted event: one row per event_id, whatever the retries.
CREATE TABLE user_product_interactions (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL UNIQUE,
    user_id      text NOT NULL REFERENCES users (user_id),
    product_id   text NOT NULL REFERENCES products (product_id),
    event_type   text NOT NULL CHECK (event_type IN
                   ('view', 'click', 'add_to_cart', 'remove_from_cart', 'purchase', 'rating')),
    value        double precision,
    price        numeric(14, 4),
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    session_id   text,
    rec_id       text,
    context      jsonb,
    archived_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upi_user_ts_idx ON user_product_interactions (user_id, ts);
CREATE INDEX upi_product_ts_idx ON user_product_interactions (product_id, ts);
CREATE INDEX upi_ts_idx ON user_product_interactions (ts);

CREATE TABLE model_versions (
    version       integer PRIMARY KEY,
    status        text NOT NULL CHECK (status IN
                    ('training', 'published', 'rejected', 'failed', 'retired')),
    is_active     boolean NOT NULL DEFAULT false,
    params        jsonb NOT NULL DEFAULT '{}'::jsonb,
    metrics       jsonb NOT NULL DEFAULT '{}'::jsonb,
    artifact_uri  text,
    data_start    timestamptz,
    data_end      timestamptz,
    n_interactions bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    notes         text
);
CREATE UNIQUE INDEX model_versions_one_active ON model_versions (is_active) WHERE is_active;

CREATE TABLE train_jobs (
    job_id       uuid PRIMARY KEY,
    status       text NOT NULL CHECK (status IN
                   ('queued', 'running', 'published', 'rejected', 'failed')),
    reason       text NOT NULL DEFAULT 'manual',
    version      integer REFERENCES model_versions (version),
    metrics      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experiments (
    name         text PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('draft', 'running', 'stopped')),
    variants     jsonb NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
