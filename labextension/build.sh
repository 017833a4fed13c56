#!/usr/bin/env bash
# Rebuild the prebuilt extension in vknb/labextension/ (shipped in the wheel, installed to
# share/jupyter/labextensions/vknb-glsl/) from src/.  Needs Node.js >= 18 and npm, and
# JupyterLab 4 in ../.venv (its staging package.json is the "core" the extension is built
# against).  CI and users never run this: they get the committed assets.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
npm ci --no-audit --no-fund
npx tsc
core=$("$PY" -c "import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), 'staging'))")
rm -rf ../vknb/labextension
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" .
cat > ../vknb/labextension/install.json <<'JSON'
{
  "packageManager": "python",
  "packageName": "vknb",
  "uninstallInstructions": "Use your Python package manager (pip, conda, etc.) to uninstall the package vknb"
}
JSON
echo "built vknb/labextension/ ($(ls ../vknb/labextension/static | wc -l) static files)"
