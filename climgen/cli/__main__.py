"""``python -m climgen.cli``: the command line."""

from climgen.cli import main

main()
