"""The mass-send guard: held nudges found by rule quickly, longer setting keys (release markers);
the schema version lives in Alembic now.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_nudges_rule_state", "nudges", ["rule_id", "state"])
    with op.batch_alter_table("nudger_meta") as meta:  # room for `released:<rule>:<day>` markers
        meta.alter_column("key", type_=sa.String(200), existing_type=sa.String(64), existing_nullable=False)
    op.execute(sa.text("DELETE FROM nudger_meta WHERE key = 'schema_version'"))


def downgrade() -> None:
    op.drop_index("ix_nudges_rule_state", table_name="nudges")
    with op.batch_alter_table("nudger_meta") as meta:
        meta.alter_column("key", type_=sa.String(64), existing_type=sa.String(200), existing_nullable=False)
    op.execute(sa.text("INSERT INTO nudger_meta (key, value) VALUES ('schema_version', '3')"))
