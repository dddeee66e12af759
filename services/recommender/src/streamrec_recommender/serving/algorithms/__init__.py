"""One module per served algorithm; each registers its scorer in ``serving.scorers``."""
