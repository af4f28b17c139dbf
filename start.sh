#!/usr/bin/env bash
# Starts the studio (UI + API) on http://127.0.0.1:7860, installing what it needs first.
#   ./start.sh [--model Qwen/Qwen3-TTS-12Hz-0.6B-Base] [--device cuda] [--port 7860] ...
set -euo pipefail
cd "$(dirname "$0")"
source tools/bootstrap.sh
bootstrap_system_packages ffmpeg
bootstrap_venv
exec "$VENV/bin/python" app.py "$@"
