"""Domain errors. Each carries a message a user can act on; the CLI prints it on one line and the
app shows it with ``st.error``. None of them ever carries a customer's personal data.

An error a user meets on a page also carries a catalog key and its fields
(``AnalyticsError("No request #7.", key="errors.no_request", id=7)``): the page shows the catalog's
text in the user's language (:func:`describe` with ``lang``), while the English message stays what
the CLI prints and the log records. An error without a key is shown in its English words."""

import re


class AnalyticsError(Exception):
    """Base of every error this package raises on purpose.

    Parameters
    ----------
    message : str
        The English line (CLI, log).
    key : str, optional
        A key of ``data/i18n.yaml`` (``errors.*``) whose text says the same in each language.
    **fields
        The key's ``str.format`` fields (no personal data: ids, counts, names of columns).
    """

    def __init__(self, *args, key: str | None = None, **fields):
        super().__init__(*args)
        self.key = key
        self.fields = fields


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


def describe(exc: BaseException, lang: str | None = None) -> str:
    """One line about ``exc`` that is safe to show, store or log: never a customer's value.

    With ``lang`` ("en" or "zh"), an error carrying a catalog key is said in that language (its
    English message otherwise); without it, the English message (CLI and logs).

    Our own errors are written to be shown (the class docstring above). Anything else may quote
    data: a driver's message carries the SQL's bound parameters (names, ID numbers), pandas and
    scikit-learn quote the value they could not convert, and a decode error quotes the bytes. Of
    those only the class is named, and for the store's schema errors the driver's first line, which
    names a table or column ("no such column: aum"), never a row.
    """
    if isinstance(exc, AnalyticsError):
        key = getattr(exc, "key", None)
        if lang is not None and key:
            from analytics import i18n  # here: i18n is above this module in the import order

            # Only when every field the text names was given (else the English message, never "{id}").
            if i18n.has(key) and i18n.fields(i18n.tr(key, lang)) <= set(exc.fields):
                try:
                    return i18n.tr(key, lang, **exc.fields)
                except (IndexError, ValueError):  # a field of the wrong type for its format
                    pass
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
