"""``python -m trionet`` runs the command line, as the ``trionet`` script does."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
