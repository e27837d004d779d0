import sys

from bcartnb.cli import main

sys.exit(main())
