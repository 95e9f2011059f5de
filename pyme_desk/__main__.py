"""``python -m pyme_desk <subcommand>``: the same as the ``pyme-desk`` console script."""
import sys

from pyme_desk.cli import main

sys.exit(main())
