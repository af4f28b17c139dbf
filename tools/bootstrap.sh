# Shared by start.sh and test.sh: a virtual environment with the CPU torch 2.13.0 installed
# first (any other torch spec pulls gigabytes of CUDA wheels), then this project.
VENV=${VENV:-.venv}

bootstrap_system_packages() {
  local missing=()
  for pkg in "$@"; do
    command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: missing system packages (${missing[*]}); install them with your package manager" >&2
  fi
}

bootstrap_venv() {  # $1: optional extra ("test")
  local extra=${1:-}
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  local stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-$extra"
  [[ -f $stamp ]] && return 0
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip show torch >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e ".${extra:+[$extra]}"
  touch "$stamp"
}
