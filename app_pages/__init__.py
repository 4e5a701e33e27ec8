"""Streamlit page scripts (one thin file per page) and their shared helpers (common.py).

Not named ``pages/``: Streamlit serves every script in a folder of that name by URL, past the login
gate, whatever ``st.navigation`` says.
"""
