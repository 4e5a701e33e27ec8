"""Streamlit page scripts (one thin file per page) and the three modules they share:

* ``session``: the engine, the logged-in user and the login glue, the audit trail, page gating,
  the UI language and number formats;
* ``widgets``: segment filters, tables, audited exports, the language switch;
* ``loaders``: every cached loader (``st.cache_data`` / ``st.cache_resource``).

Imports go one way: page scripts -> widgets -> session -> loaders -> analytics. A page script only
places what these and ``analytics`` give it: it computes nothing and builds no figure.

Not named ``pages/``: Streamlit serves every script in a folder of that name by URL, past the login
gate, whatever ``st.navigation`` says.
"""
