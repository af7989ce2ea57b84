"""Live display of streamed tokens: one output area per sample in a notebook, plain text elsewhere.

Why: with ``--stream`` the user watches tokens arrive, then the DataFrame replaces them. Display
calls only happen on the main thread (workers' output would land in the wrong cell), so deltas
from sweep workers are buffered and drawn on the next ``flush``.
"""
from __future__ import annotations

import sys
import threading
import time

from .frame import printable
from .pool import in_notebook

MIN_INTERVAL_S = 0.05


class StreamView:
    """Collects deltas per (call, sample) and draws them, at most every 50 ms per flush."""

    def __init__(self) -> None:
        self.notebook = in_notebook()
        self.texts: dict[tuple[int, int], str] = {}
        self._dirty: set[tuple[int, int]] = set()
        self._handles: dict[tuple[int, int], object] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def on_delta(self, call: int, sample: int, delta: str) -> None:
        key = (call, sample)
        with self._lock:
            self.texts[key] = self.texts.get(key, "") + delta
            self._dirty.add(key)
        if not self.notebook and threading.current_thread() is threading.main_thread():
            prefix = "" if len(self.texts[key]) > len(delta) else f"\n[call {call} sample {sample}] "
            sys.stdout.write(printable(prefix + delta))
            sys.stdout.flush()
            with self._lock:
                self._dirty.discard(key)
        elif key not in self._handles or time.monotonic() - self._last >= MIN_INTERVAL_S:
            self.flush()  # a new sample gets its area at once; updates are throttled

    def flush(self) -> None:
        """Draw pending text (main thread only; a no-op elsewhere)."""
        if not self.notebook or threading.current_thread() is not threading.main_thread():
            return
        from IPython.display import display

        with self._lock:
            dirty = sorted(self._dirty)
            self._dirty.clear()
        for key in dirty:
            bundle = {"text/plain": printable(f"[call {key[0]} sample {key[1]}] {self.texts[key]}")}
            handle = self._handles.get(key)
            if handle is None:
                self._handles[key] = display(bundle, raw=True, display_id=True)
            else:
                handle.update(bundle, raw=True)  # type: ignore[attr-defined]
        self._last = time.monotonic()

    def close(self) -> None:
        """Remove the live areas: the DataFrame takes their place."""
        if not self.notebook:
            if self.texts:
                sys.stdout.write("\n")
            return
        for handle in self._handles.values():
            handle.update({"text/plain": ""}, raw=True)  # type: ignore[attr-defined]
