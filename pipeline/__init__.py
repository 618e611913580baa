"""The `mosaic-it` command. Importing it first keeps one third-party notice off stderr (see quiet.py)."""

from pipeline import quiet as _quiet  # noqa: F401  # before anything imports apache_beam
