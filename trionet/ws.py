"""Placeholder: trionet.ws is written by its own issue."""
