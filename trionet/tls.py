"""Placeholder: trionet.tls is written by its own issue."""
