"""Use cases. Each takes ports (see ``sequencer.core.ports``) and owns one unit of work."""
