from edgecam.cli import entry

entry()
