"""The local stack: broker, Redis, Postgres and the four services as local processes.

Used by ``make up``/``make down``, the test fixtures and the benchmarks. A running stack is
described by ``<state dir>/stack.json`` (see :mod:`streamrec_dev.localstack.description`).
"""
