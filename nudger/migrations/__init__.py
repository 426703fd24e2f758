"""Alembic migrations of the ledger, for SQLite and PostgreSQL (`nudger db upgrade`)."""
