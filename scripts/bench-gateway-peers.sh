#!/usr/bin/env bash
# The gateway benchmark's peer: LiteLLM's proxy (PyPI litellm[proxy] 1.108.0, 2 workers, simple
# shuffle between two deployments) in front of the stub upstream that `routerctl bench-gateway
# --stub-port STUB_PORT` serves, in a virtualenv under .cache/bench-venv. Bench only: no test uses it.
#
# RouteLLM's server is not measured: `routellm[serve]` pulls torch 2.15.0 with its nvidia-* CUDA
# wheels (a GPU stack of several GB), which this benchmark does not install.
#
# Usage: scripts/bench-gateway-peers.sh start STUB_PORT LITELLM_PORT
#        scripts/bench-gateway-peers.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/bench-venv
pidfile=.cache/bench-litellm.pid
case "${1:?usage: scripts/bench-gateway-peers.sh start STUB_PORT LITELLM_PORT | stop}" in
start)
    stub=${2:?the stub port}
    port=${3:?the LiteLLM port}
    if ! "$venv/bin/python" -c "import litellm" 2>/dev/null; then
        echo "bench-gateway-peers: installing litellm[proxy]==1.108.0 into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "litellm[proxy]==1.108.0"
    fi
    config=.cache/bench-litellm.yaml
    cat > "$config" <<YAML
model_list:
  - model_name: bench
    litellm_params: {model: openai/ok, api_base: "http://127.0.0.1:$stub/ok/v1", api_key: none}
  - model_name: bench
    litellm_params: {model: openai/ok2, api_base: "http://127.0.0.1:$stub/ok2/v1", api_key: none}
router_settings:
  routing_strategy: simple-shuffle
litellm_settings:
  telemetry: false
general_settings:
  master_key: sk-routerd-bench-gateway
YAML
    LITELLM_LOG=ERROR nohup "$venv/bin/litellm" --config "$config" --host 127.0.0.1 --port "$port" --num_workers 2 \
        > .cache/bench-litellm.log 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 120); do
        if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health/liveliness', timeout=1)" 2>/dev/null; then
            echo "bench-gateway-peers: LiteLLM's proxy on 127.0.0.1:$port (pid $(cat "$pidfile"))"
            exit 0
        fi
        sleep 1
    done
    echo "bench-gateway-peers: LiteLLM did not start; see .cache/bench-litellm.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pkill -TERM -P "$(cat "$pidfile")" 2>/dev/null || true
        kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
    ;;
esac
