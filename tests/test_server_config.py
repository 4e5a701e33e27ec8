"""The committed server configuration is the hardened production profile (issue 17).

The options are read the way ``streamlit run`` reads them: Streamlit's own config loader parses the
global file (here an empty home), then the project's ``.streamlit/config.toml`` in the working folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit import config

ROOT = Path(__file__).resolve().parents[1]

# (option, required value): one row a setting of the production profile.
HARDENED = [
    ("server.enableXsrfProtection", True),
    ("server.enableCORS", True),
    ("client.showErrorDetails", "none"),
    ("client.toolbarMode", "viewer"),
    ("server.fileWatcherType", "none"),
    ("server.runOnSave", False),
    ("server.enableStaticServing", False),
    ("server.headless", True),
    ("server.address", "localhost"),
    ("browser.gatherUsageStats", False),
]


@pytest.fixture
def effective_config(monkeypatch, tmp_path):
    """Streamlit's options as parsed from the project folder, with no user-level file or
    STREAMLIT_* variable mixed in; the test process's own options are restored afterwards."""
    import os

    for name in list(os.environ):
        if name.startswith("STREAMLIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(ROOT)
    options = config.get_config_options(force_reparse=True)
    yield options
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)


@pytest.mark.parametrize(("option", "expected"), HARDENED)
def test_hardened_option(effective_config, option, expected):
    assert config.get_option(option) == expected
    # Set by the committed file, not by a default that a Streamlit upgrade could change.
    where = effective_config[option].where_defined
    assert Path(where).resolve() == ROOT / ".streamlit" / "config.toml", (option, where)


def test_no_wildcard_cors_origin(effective_config):
    origins = config.get_option("server.corsAllowedOrigins") or []
    assert all("*" not in origin for origin in origins), origins
