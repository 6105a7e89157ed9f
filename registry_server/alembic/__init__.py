"""alembic package."""
