#!/usr/bin/env bash
# vknb set-up and jobs.  Usage:
#   bash run.sh demo    install what is missing, run the quickstart notebook headless (HTML under
#                       build/), print the device table and the dispatch timings
#   bash run.sh test    install what is missing, run every test: unit tests, notebooks (nbval),
#                       the docs build, the benchmark smoke test and the browser tests (JupyterLab
#                       and Notebook 7 in headless Chromium), with validation layers on
# Both are idempotent: OS packages through apt when root (else the exact command is printed), a
# virtual environment at .venv with vknb installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")"
job=${1:-}
case "$job" in demo|test|setup) ;; *) echo "usage: bash run.sh demo|test" >&2; exit 2;; esac

# --- OS packages -----------------------------------------------------------------------------
pkgs=(libvulkan1 mesa-vulkan-drivers glslc spirv-tools python3 python3-venv)
# chromium: Debian's browser for the browser tests (tests/browser, driven by Playwright).
if [ "$job" = test ]; then pkgs+=(spirv-cross vulkan-validationlayers glslang-tools chromium); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Python that is not Debian's (pyenv, conda) brings its own venv: then python3-venv is not needed.
PY=${PYTHON:-python3}
if command -v "$PY" >/dev/null 2>&1 && "$PY" -c "import venv, ensurepip" 2>/dev/null; then
  missing=("${missing[@]/python3-venv}"); missing=("${missing[@]/python3}")
  tmp=(); for p in "${missing[@]}"; do [ -n "$p" ] && tmp+=("$p"); done; missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing OS packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "vknb needs these Debian packages: ${missing[*]}" >&2
    echo "run:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# --- Python environment ------------------------------------------------------------------------
stamp=.venv/.vknb-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing vknb (editable) and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e ".[test,dev]" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import vknb, vulkan, IPython, ipywidgets, nbval" 
  echo "$want" > "$stamp"
fi
# The prebuilt JupyterLab / Notebook 7 extension (GLSL highlighting of %%glsl cells): a wheel
# installs it in share/jupyter/labextensions; an editable install does not (setuptools installs no
# data files in editable mode), so link it there, as `jupyter labextension develop` would.
ext=.venv/share/jupyter/labextensions/vknb-glsl
if [ ! -e "$ext" ]; then
  mkdir -p "$(dirname "$ext")" && ln -sfn "$PWD/vknb/labextension" "$ext"
fi
export PYTHONUNBUFFERED=1

case "$job" in
  setup) echo "set-up complete";;
  demo) exec .venv/bin/python scripts/demo.py ;;
  test) exec bash scripts/test.sh ;;
esac
