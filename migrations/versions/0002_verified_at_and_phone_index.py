"""Record when a code was verified and the provider's message id; index lookups by phone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-08
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("verifications", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("verifications", sa.Column("provider_message_id", sa.String(length=64), nullable=True))
    op.create_index("ix_verifications_phone_created", "verifications", ["phone_number", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_verifications_phone_created", table_name="verifications")
    op.drop_column("verifications", "provider_message_id")
    op.drop_column("verifications", "verified_at")
