"""Alembic's environment: nudger passes its own connection (see nudger/schema.py); the `alembic`
command line works too, with `-x url=...` (for developers writing a new migration)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from nudger.ledger import Base

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        render_as_batch=conn.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        run(conn)
