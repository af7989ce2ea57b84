"""``%load_ext hl_notebook`` time vs ``import pandas``, each in a fresh interpreter.

    python bench/load_ext.py                  # 5 repetitions of each, interleaved
    python bench/load_ext.py --repeat 11 --importtime

Each repetition starts a new ``python`` (this venv's) for each of:

* ``%load_ext hl_notebook``  an ``InteractiveShell`` is created first (not timed), then only
                             ``run_line_magic('load_ext', 'hl_notebook')`` is timed;
* ``import pandas``          timed the same way in a bare interpreter (the baseline);
* ``import hl_notebook``     the package import alone, for reference.

Ratio = median load_ext time / median ``import pandas`` time. The load_ext child also reports which
heavy modules the extension pulled in. ``--importtime`` adds the slowest imports of load_ext
(``python -X importtime``, cumulative microseconds, top 12, only modules new after the shell).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import _common as c

HEAVY = ["pandas", "numpy", "requests", "urllib3", "fastapi", "uvicorn", "pydantic", "starlette", "ipywidgets",
         "tqdm", "jinja2", "sqlite3", "hl_notebook.server", "hl_notebook.api", "hl_notebook.frame"]

LOAD_EXT = f"""
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
before = set(sys.modules)
t0 = time.perf_counter()
shell.run_line_magic('load_ext', 'hl_notebook')
elapsed = time.perf_counter() - t0
assert 'hlchat' in shell.magics_manager.magics['cell']
new = set(sys.modules) - before
print(json.dumps({{"s": elapsed, "new_modules": len(new), "heavy": [m for m in {HEAVY!r} if m in new],
                  "names": sorted(new)}}))
"""
IMPORT_PANDAS = """
import json, time
t0 = time.perf_counter()
import pandas
print(json.dumps({"s": time.perf_counter() - t0}))
"""
IMPORT_HL = """
import json, time
t0 = time.perf_counter()
import hl_notebook
print(json.dumps({"s": time.perf_counter() - t0}))
"""


def run(code: str, *flags: str) -> dict:
    out = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=c.ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr"] = out.stderr
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat 1..50")
    c.header("%load_ext hl_notebook vs import pandas (fresh interpreter each)")
    cases = {"%load_ext hl_notebook": LOAD_EXT, "import pandas": IMPORT_PANDAS, "import hl_notebook": IMPORT_HL}
    times: dict[str, list[float]] = {name: [] for name in cases}
    info: dict = {}
    for _ in range(args.repeat):
        for name, code in cases.items():
            result = run(code)
            times[name].append(result["s"])
            if name.startswith("%"):
                info = result
    base = c.median(times["import pandas"])
    rows = [[name, 1000 * c.median(v), 1000 * min(v), 1000 * max(v), c.median(v) / base] for name, v in times.items()]
    print(c.table(["step", "median ms", "best ms", "worst ms", "x import pandas"], rows))
    print(f"load_ext imported {info['new_modules']} new modules; heavy ones among them: "
          f"{', '.join(info['heavy']) or 'none'}")
    print(f"%load_ext hl_notebook / import pandas = {c.median(times['%load_ext hl_notebook']) / base:.3f}x")
    if args.importtime:
        result = run(LOAD_EXT, "-X", "importtime")
        entries = []
        for line in result["stderr"].splitlines():
            if line.startswith("import time:") and "|" in line and "cumulative" not in line:
                _, cumulative, name = line[len("import time:"):].split("|")
                if name.strip() in result["names"]:
                    entries.append((int(cumulative), name.rstrip()))
        print("# slowest imports made by load_ext itself (python -X importtime, cumulative us):")
        for cumulative, name in sorted(entries, reverse=True)[:12]:
            print(f"{cumulative:>10,}  {name}")


if __name__ == "__main__":
    main()
