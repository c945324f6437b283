"""SQLAlchemy models, sessions, migrations and the repository."""

# Every table module, so Base.metadata is complete wherever the package is imported.
from sequencer.adapters.db import tables, tables_consent, tables_inbound, tables_notes  # noqa: F401
