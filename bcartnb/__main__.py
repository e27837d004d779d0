from bcartnb.cli import entry

entry()
