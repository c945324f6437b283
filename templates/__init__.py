"""refseq's shipped templates, installed as the package ``sequencer.templates``.

A data package: pyproject.toml maps this folder into the wheel (and an editable install) under
that name, and sequencer/resources.py reads it with importlib.resources.
"""
