"""Errors that a user's input causes, as opposed to bugs.

The `reglight` command prints an exception of these classes as one short message (exit code 2) instead of
a traceback. Each data error is also an instance of the builtin exception that code outside the command
expects (`ValueError`, `FileNotFoundError`), so `except ValueError:` keeps working.

Examples:
    >>> try:
    ...     raise DataValueError("`target` column 'z' not in my.csv; columns: ['a', 'y']")
    ... except ValueError as err:
    ...     isinstance(err, InputError)
    True
"""

from __future__ import annotations

__all__ = ["DataFileError", "DataValueError", "InputError", "UsageError"]


class InputError(Exception):
    """Marker base class: the exception comes from the user's input (a file, a value, a data folder)."""


class DataValueError(InputError, ValueError):
    """The data a user pointed at cannot be used as it is (a non-numeric column, a missing target column)."""


class DataFileError(InputError, FileNotFoundError):
    """A data file or folder the user pointed at is missing or unreadable."""


class UsageError(InputError):
    """A command line or a config that cannot be run, already worded for the user.

    Args:
        message: What is wrong: the option, the value given and what is allowed.
        fix: One line that says what to do about it.
    """

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
