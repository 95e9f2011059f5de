"""Start pyme-desk from a source checkout: ``python main.py [subcommand ...]``.

The same as the ``pyme-desk`` console script; with no subcommand it starts the application.
"""
import sys

from pyme_desk.cli import main

if __name__ == "__main__":
    sys.exit(main())
