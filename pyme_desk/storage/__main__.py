"""``python -m pyme_desk.storage``: the data server alone (same options as ``pyme-desk dataserver``)."""
import sys

from pyme_desk.cli import main

sys.exit(main(["dataserver", *sys.argv[1:]]))
