"""streamrec developer tooling: local stack, synthetic data. Never imported by a service."""
