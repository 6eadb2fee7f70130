"""Allows ``python -m satwatch``."""

from satwatch.cli import app

app()
