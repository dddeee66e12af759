-- Gradual rollout of a newly published model version (the trainer's registry): the version
-- serves a canary share of users (consistent hash of the user id) next to the active version
-- until the online comparison promotes it or rolls it back (or an admin does).
CREATE TABLE model_rollouts (
    version     integer PRIMARY KEY REFERENCES model_versions (version) ON DELETE CASCADE,
    state       text NOT NULL CHECK (state IN ('canary', 'promoted', 'rolled_back', 'aborted')),
    share       double precision NOT NULL CHECK (share > 0 AND share < 1),
    baseline    integer,
    evidence    jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at  timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz
);
CREATE UNIQUE INDEX model_rollouts_one_canary ON model_rollouts (state) WHERE state = 'canary';
