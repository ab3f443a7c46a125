#!/usr/bin/env bash
# Download, on this machine (where pip reaches the package index), the wheels that the GPU
# machine's Python 3.12 lacks for training: pydantic and what it needs, at the versions
# installed here. They land in .whl/ (ignored by git), which device_check.sh installs from.
#
#   bash benchmarks/device/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python=${PYTHON:-python}
pins=$("$python" - <<'PY'
from importlib.metadata import version
names = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
print(" ".join(f"{name}=={version(name)}" for name in names))
PY
)
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086  # one argument per pin
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl $pins
ls .whl
