"""The one place refseq finds the files it ships: templates and the example campaign.

The templates live in the top-level ``templates/`` folder of the source tree; pyproject.toml maps
that folder into the package as ``sequencer.templates`` (``package-dir``), so a wheel carries them
inside ``sequencer/templates/`` and an editable install (``pip install -e .``) resolves the same
name to the source folder. Both are read here with :mod:`importlib.resources`, nothing else.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATES_PACKAGE = "sequencer.templates"


def _folder(package: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as e:  # an editable install made before the mapping existed
        raise RuntimeError(
            f"refseq's shipped files ({package}) are not installed: "
            "run `pip install -e .` (make setup) again, or install the wheel"
        ) from e
    if not isinstance(root, Path):  # a zipped install: Jinja and StaticFiles need real folders
        raise RuntimeError(
            f"refseq's {package} is not a folder on disk ({root!r}): "
            "install refseq unzipped (pip install referral-sequencer, or pip install -e .)"
        )
    return root


def templates_dir() -> Path:
    """The shipped ``templates/`` folder (``email/`` and ``web/``)."""
    return _folder(TEMPLATES_PACKAGE)


def email_templates_dir() -> Path:
    """The shipped email templates, one folder per template name."""
    return templates_dir() / "email"


def web_templates_dir() -> Path:
    """The web queue's pages, with ``static/`` for its CSS and JS."""
    return templates_dir() / "web"


def example_dir() -> Path:
    """The example campaign that ``refseq init`` writes and ``refseq demo`` runs."""
    return _folder("sequencer") / "example"
