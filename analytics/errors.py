"""Domain errors. Each carries a message a user can act on; the CLI prints it on one line and the
app shows it with ``st.error``. None of them ever carries a customer's personal data."""


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
