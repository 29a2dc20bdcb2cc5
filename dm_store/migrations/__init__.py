"""Alembic migrations of the store, shipped inside the package (``Store.upgrade`` runs them)."""
