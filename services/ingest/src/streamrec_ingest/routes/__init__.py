"""HTTP routes of the ingest gateway: events, catalog (products, users), orders."""
