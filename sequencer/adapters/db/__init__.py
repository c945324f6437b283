"""SQLAlchemy models, sessions, migrations and the repository."""
