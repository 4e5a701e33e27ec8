"""Domain errors. Each carries a message a user can act on; the CLI prints it on one line and the
app shows it with ``st.error``. None of them ever carries a customer's personal data."""

import re


class AnalyticsError(Exception):
    """Base of every error this package raises on purpose."""


class StoreError(AnalyticsError):
    """The customer store cannot be opened or does not have the expected shape."""


class StoreNotInitialisedError(StoreError):
    """The store exists but has no schema, or no data, or no completed refresh yet."""


class LoadError(AnalyticsError):
    """A file cannot be imported at all (unreadable, wrong encoding, missing required columns)."""


class RefreshError(AnalyticsError):
    """A refresh could not run or failed in one of its stages."""


class ConfigError(AnalyticsError):
    """A setting or configuration file is missing or invalid."""


class UnstorableTextError(AnalyticsError, ValueError):
    """Text typed by a user holds a character the store cannot hold (NUL). The message never
    quotes the text. Also a ValueError, which callers of input checks already catch."""


def describe(exc: BaseException) -> str:
    """One line about ``exc`` that is safe to show, store or log: never a customer's value.

    Our own errors are written to be shown (the class docstring above). Anything else may quote
    data: a driver's message carries the SQL's bound parameters (names, ID numbers), pandas and
    scikit-learn quote the value they could not convert, and a decode error quotes the bytes. Of
    those only the class is named, and for the store's schema errors the driver's first line, which
    names a table or column ("no such column: aum"), never a row.
    """
    if isinstance(exc, AnalyticsError):
        return str(exc)
    name = type(exc).__name__
    # SQLAlchemy wraps the driver's error; its own text appends the statement and the parameters.
    original = getattr(exc, "orig", None)
    if original is not None:
        driver = type(original).__name__
        undecodable = _UNDECODABLE.match(str(original))
        if undecodable:  # sqlite3 quotes the bad text after the column's name: keep the name only
            return f"{name}: column {undecodable.group(1)!r} holds text that is not valid UTF-8"
        if _names_schema_only(original):
            first = str(original).strip().splitlines()[0] if str(original).strip() else ""
            return f"{name} ({driver}): {first}"[:300]
        return f"{name} ({driver})"
    return name


# Driver errors whose first line names a missing or renamed table or column and nothing from a row.
# sqlite3 (OperationalError): "no such table: x", "no such column: x", "table x has no column named y";
# psycopg: UndefinedTable / UndefinedColumn ("relation "x" does not exist", "column "y" does not exist").
_SCHEMA_MESSAGES = ("no such table:", "no such column:", "has no column named", "does not exist")
_SCHEMA_ERRORS = ("UndefinedTable", "UndefinedColumn")
_UNDECODABLE = re.compile(r"Could not decode to UTF-8 column '([A-Za-z0-9_]+)'")


def _names_schema_only(original: BaseException) -> bool:
    if type(original).__name__ in _SCHEMA_ERRORS:
        return True
    text = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return type(original).__name__ == "OperationalError" and any(m in text for m in _SCHEMA_MESSAGES)
