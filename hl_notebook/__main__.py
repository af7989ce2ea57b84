"""``python -m hl_notebook quickstart [NOTEBOOK]``: run a notebook headless and print its result table.

Why: the README's first command — proves the whole path (kernel, magic, embedded server, frame)
works on a fresh machine with no keys and no network.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_notebook(path: Path, timeout: int = 600) -> str:
    """Execute ``path`` with a real kernel; return the text of the last cell's last output."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in reversed(notebook.cells):
        for output in reversed(cell.get("outputs", [])):
            text = output.get("data", {}).get("text/plain") or output.get("text")
            if text:
                return text
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hl_notebook")
    sub = parser.add_subparsers(dest="command", required=True)
    quick = sub.add_parser("quickstart", help="run a notebook headless and print its last output")
    quick.add_argument("notebook", nargs="?", default="notebooks/quickstart.ipynb")
    args = parser.parse_args(argv)
    path = Path(args.notebook)
    if not path.exists():
        print(f"no notebook at {path}: run this from the repository root", file=sys.stderr)
        return 2
    try:
        print(run_notebook(path))
    except ImportError as exc:
        print(f"{exc.name} is missing: pip install '.[notebook]'", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
