"""``make demo``: run the demo campaign end to end and say where to look.

Grows with the flow: for now it shows the demo members' audience.
"""

from __future__ import annotations

import sys


def main() -> int:
    print("bcartnb demo: the member stage is being built; nothing to show yet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
