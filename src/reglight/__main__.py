"""`python -m reglight` is the `reglight` command (see `reglight --help`)."""

from reglight.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
