"""Placeholder: the pytest plugin (issue 6) replaces this module.

Registered through the ``pytest11`` entry point, so it must always import.
"""
