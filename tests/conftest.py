"""Fixtures shared by every test package.

PostgreSQL: ``pg_server`` (session-scoped running server) and ``postgres_url`` (a fresh,
migrated database per test); see :mod:`tests.pg`.
"""

from tests.pg import pg_server, postgres_url  # noqa: F401 - fixtures

