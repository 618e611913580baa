"""Lets Beam's --setup_file build this project (python setup.py sdist); the metadata lives in pyproject.toml."""

from setuptools import setup

setup()
