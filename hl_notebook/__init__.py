"""hl_notebook: chat with Humanloop v4 endpoints from Jupyter and get pandas DataFrames back.

Why this module is small: ``import hl_notebook`` must stay cheap; pandas, requests and the server
are imported when a function below is first used.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute). No module may share a public function's name: importing
# ``hl_notebook.sweep`` would replace the function ``hl_notebook.sweep`` with the module.
_LAZY = {
    "chat": ("api", "chat"), "sweep": ("api", "sweep"), "retry": ("api", "retry"), "api_client": ("api", "api_client"),
    "history": ("archive", "history"), "compare": ("analysis", "compare"), "summary": ("analysis", "summary"),
    "plot": ("analysis", "plot"), "ChatPanel": ("widget", "ChatPanel"), "HLSettings": ("config", "HLSettings"),
    "HLError": ("errors", "HLError"), "register_config": ("manage", "register_config"),
    "create_experiment": ("manage", "create_experiment"), "deploy": ("manage", "deploy"),
    "list_configs": ("manage", "list_configs"), "list_experiments": ("manage", "list_experiments"),
    # evaluation (issue 12): scores, judges, cost, diffs, reports
    "score": ("scoring", "score"), "judge": ("judging", "judge"), "add_cost": ("pricing", "add_cost"),
    "set_price": ("pricing", "set_price"), "diff": ("diffing", "diff"), "report": ("reporting", "report"),
    # the experiment loop (issue 13): feedback on logs, experiments that learn from it
    "feedback": ("learning", "feedback"), "experiment": ("learning", "experiment"),
}
__all__ = [*_LAZY, "panel", "load_ipython_extension", "__version__"]


def panel(shell: Any = None) -> Any:
    """A new ChatPanel bound to the running IPython shell (``hl_notebook.panel()`` in a cell)."""
    from .widget import panel as make_panel

    return make_panel(shell)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module 'hl_notebook' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext hl_notebook``: register the magics and make ``%config HLSettings`` work."""
    from .config import HLSettings
    from .magic import HLChatMagics

    settings = HLSettings.instance(parent=ipython)
    if settings not in ipython.configurables:
        ipython.configurables.append(settings)
    ipython.register_magics(HLChatMagics)
