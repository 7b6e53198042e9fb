"""Register the namespace lab's fixture and report hook (defined in lab.py)."""

from tests.integration.olsr.lab import lab, pytest_runtest_makereport  # noqa: F401
