"""`python -m soundstorm`: the command line (the same as `soundstorm`)."""

from soundstorm.doors.cli import main

if __name__ == "__main__":
    main()
