"""``python -m reglight`` is the ``reglight`` command."""

from reglight.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
