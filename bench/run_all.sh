#!/usr/bin/env bash
# Run every benchmark twice (small defaults), or with --full the sizes recorded in bench/README.md.
# Output goes to stdout; each run is headed by its command. Needs: .venv, and `hey` for the Go
# baselines (apt-get install hey). Usage: bash bench/run_all.sh [--full] > /tmp/bench.txt
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

run() {
  for i in 1 2; do
    echo "=================== run $i: python $*"
    $PY "$@"
    echo
  done
}

if [[ "${1:-}" == "--full" ]]; then
  run bench/sweep_walltime.py --n 500 --latency-ms 100 --concurrency 16 --repeat 3 --server both
  run bench/sweep_walltime.py --n 1000 --latency-ms 50 --concurrency 32 --repeat 3
  run bench/sweep_walltime.py --n 500 --latency-ms 100 --concurrency 16 --repeat 2 --server embedded
  run bench/client_overhead.py --n 300 --repeat 5
  run bench/sdk_vs_sweep.py --n 200 --latency-ms 50 --repeat 2
  run bench/frame_assembly.py --n 100000 --repeat 3
  run bench/frame_assembly.py --n 100000 --samples 2 --repeat 2
  run bench/load_ext.py --repeat 11
  run bench/server_throughput.py --n 4096 --concurrency 32 --repeat 3 --all
  run bench/server_throughput.py --n 1024 --concurrency 16 --repeat 3
  run bench/server_breakdown.py --n 1024 --latency-ms 50 --concurrency 32
  run bench/server_breakdown.py --n 512 --latency-ms 100 --concurrency 16
  run bench/server_breakdown.py --n 4096 --latency-ms 0 --concurrency 32
else
  run bench/sweep_walltime.py
  run bench/client_overhead.py
  run bench/sdk_vs_sweep.py
  run bench/frame_assembly.py
  run bench/load_ext.py
  run bench/server_throughput.py
  run bench/server_breakdown.py
fi
