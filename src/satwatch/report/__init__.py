"""The HTML report of an evaluation run: per-channel figures and a summary beside published
SMAP figures (``satwatch report``).

Usage::

    from satwatch.report import build_report
    index = build_report(Path("runs/seed"), Path("report"))
"""

from satwatch.report.html import build_report

__all__ = ["build_report"]
