"""hl_notebook: chat with Humanloop v4 endpoints from Jupyter and get pandas DataFrames back.

Why this module is small: ``import hl_notebook`` must stay cheap; pandas, requests and the server
are imported when first used.
"""
from __future__ import annotations

__version__ = "0.1.0"
