"""Celery wiring: every task is a thin shim over a service (see ``sequencer.services``)."""
