#!/usr/bin/env bash
# Runs the test suite on a fresh machine: installs what it needs, then pytest.
#   ./test.sh            # everything
#   ./test.sh -k codec   # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
source tools/bootstrap.sh
bootstrap_system_packages ffmpeg espeak-ng sox chromium
bootstrap_venv test
exec "$VENV/bin/python" -m pytest "$@"
