"""Customer-insight analytics for a bank's customer store.

Pure Python: store access, schema, demo data, analytics, access policy, audit and the
refresh pipeline. Nothing in this package imports streamlit (tests/test_layering.py checks).
"""
