"""SQLAlchemy 2 models: one row per verification attempt sent to a phone number.

The code itself is never stored, only `code_hash` (see `app.codes`). Timestamps are
timezone-aware UTC; `as_utc` repairs values read back from SQLite (unit tests),
which drops the zone.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Optional

from sqlalchemy import DateTime, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUS_PENDING = "pending"
STATUS_VERIFIED = "verified"
STATUS_LOCKED = "locked"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def as_utc(value: datetime.datetime) -> datetime.datetime:
    """`value` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base; `Base.metadata` is the target of the Alembic migrations."""


class Verification(Base):
    """A 6-digit code sent to `phone_number`, checked at most `max_attempts` times before `expires_at`."""

    __tablename__ = "verifications"
    __table_args__ = (Index("ix_verifications_phone_created", "phone_number", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    phone_number: Mapped[str] = mapped_column(String(16), nullable=False)
    code_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=STATUS_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    verified_at: Mapped[Optional[datetime.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    provider_message_id: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)

    def is_expired(self, now: datetime.datetime) -> bool:
        return as_utc(self.expires_at) <= now
