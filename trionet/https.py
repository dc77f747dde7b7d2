"""Placeholder: trionet.https is written by its own issue."""
