"""Alembic environment and migrations of the registry's schema."""
