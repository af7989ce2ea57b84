"""Front end with controls: the ipywidgets chat panel (``view``) over a plain, testable state (``state``).

Why a package: the state decides what Run sends (through ``plan.make_specs``, like the magic) and
holds no widgets; the view only edits the state and shows results.
"""
from __future__ import annotations

from .state import PanelState
from .view import ChatPanel, panel

__all__ = ["ChatPanel", "PanelState", "panel"]
