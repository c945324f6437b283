"""The rep's web queue (FastAPI). Nothing here is imported unless `refseq web` or a test asks."""
