"""refseq: an outbound referral-mention email sequencer."""

__version__ = "0.1.0"
