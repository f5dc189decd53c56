"""Fixtures shared by every test package.

PostgreSQL: ``pg_server`` (session-scoped running server) and ``postgres_url`` (a fresh,
migrated database per test); see :mod:`tests.pg`. Spark: ``spark`` (one local session for
the run); see :mod:`tests.spark`.
"""

from tests.pg import pg_server, postgres_url  # noqa: F401 - fixtures
from tests.spark import spark  # noqa: F401 - fixture

