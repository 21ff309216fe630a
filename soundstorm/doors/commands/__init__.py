"""The commands of `soundstorm`, one file each (or a family each), registered by `doors/cli.py`."""
