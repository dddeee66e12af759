-- Per-job overrides of the training settings (POST /v1/train {"params": {...}}).
ALTER TABLE train_jobs ADD COLUMN params jsonb NOT NULL DEFAULT '{}'::jsonb;
