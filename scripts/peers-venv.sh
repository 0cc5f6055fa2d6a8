# Sourced by the bench-*.sh scripts: makes ./.venv-peers with PyTorch (CPU wheels where its
# index is reachable, else PyPI's) and tensorflow-cpu + tf_keras. Sets VENV.
VENV=.venv-peers
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, torchvision, PIL" 2>/dev/null ||
  "$VENV/bin/pip" install -q torch torchvision pillow --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple ||
  "$VENV/bin/pip" install -q torch torchvision pillow ||
  echo "PyTorch not installable here: its column will be missing" >&2
"$VENV/bin/python" -c "import tf_keras, scipy" 2>/dev/null || "$VENV/bin/pip" install -q tensorflow-cpu tf_keras scipy
