#!/usr/bin/env bash
# Build llama.cpp's llama-server (an OpenAI- and Anthropic-compatible model server) from the llama.cpp
# source vendored in the llama-cpp-python sdist on PyPI: no git, no network but PyPI.
#
#   tools/build_llama_server.sh [OUT_DIR]
#
# The binary lands in OUT_DIR/llama-server (default: ~/.cache/hl_notebook/llama-server-<version>/,
# where the realmodel tests look for it; HL_LLAMA_SERVER=/path/to/llama-server points them elsewhere).
# Web UI off (nothing is fetched at build time), no curl, no OpenSSL, static, CPU only, x86-64-v3
# (AVX2/FMA) unless GGML_ARGS says otherwise. About 10 minutes of CPU time on 2 cores.
set -euo pipefail

version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/hl_notebook/llama-server-$version}
python=${PYTHON:-python3}
jobs=${JOBS:-$(nproc)}
# GGML_NATIVE=ON would follow this CPU; on machines that report AMX the OS does not enable, that build
# dies with "Illegal instruction" (seen here), so the default is a portable AVX2 build
ggml_args=${GGML_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"}

if [ -x "$out/llama-server" ]; then
  echo "already built: $out/llama-server"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "+ downloading the llama-cpp-python $version sdist"
"$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
echo "+ configuring llama.cpp in $work/build"
# shellcheck disable=SC2086  # ggml_args is a list of cmake options
cmake -S "$src" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_OPENMP=OFF $ggml_args >"$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
echo "+ building llama-server with $jobs jobs"
start=$(date +%s)
cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/build.log" || { tail -50 "$work/build.log"; exit 1; }
mkdir -p "$out"
cp "$work/build/bin/llama-server" "$out/llama-server"
echo "built $out/llama-server in $(( $(date +%s) - start )) s"
