#!/bin/sh
# The install steps shared by containers/myjepa.def (CUDA base, what users run) and
# containers/myjepa-ci.def (Debian + CPU torch, what CI builds): both run this script in %post, so
# the CI image tests what users get apart from the base.
#
# It makes a venv on top of the base image's python (--system-site-packages, so a base image's
# CUDA torch is used as is and pinned: pip never swaps it for another build), installs torch from
# TORCH_SPEC only when the base has none, installs this package from /opt/myjepa/src (copied in by
# %files), puts a `myjepa` that names the image into /opt/myjepa/bin, and checks that what got
# installed is the pinned MYJEPA_VERSION and imports.
#
# Environment:
#   MYJEPA_VERSION  required: the version the definition pins; the build fails on any other
#   PYTHON          the base image's python (default: python3 on PATH)
#   TORCH_SPEC      pip requirement for torch when the base python has none, e.g. torch==2.13.0+cpu
#   TORCH_INDEX     extra pip index for TORCH_SPEC (e.g. PyTorch's CPU index); empty: none
#   PIP_*           read by pip as usual (CI passes PIP_FIND_LINKS and PIP_CERT this way)
set -eu

ROOT=${MYJEPA_IMAGE_ROOT:-/opt/myjepa}  # the definitions' %files put things here; tests use a temp dir
SRC=$ROOT/src
VENV=$ROOT/venv

fail() {
    echo "containers/install.sh: error: $*" >&2
    exit 1
}

[ -n "${MYJEPA_VERSION:-}" ] || fail "MYJEPA_VERSION is not set (the definition's %arguments pin it)"
command -v bash >/dev/null 2>&1 \
    || fail "the image has no bash, which snakemake needs ('apptainer exec IMAGE bash -c ...')"
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || fail "no python '$PYTHON' in the base image"
[ -f "$SRC/pyproject.toml" ] || fail "$SRC/pyproject.toml is missing: build from the repository root"
src_version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$SRC/pyproject.toml")
[ "$src_version" = "$MYJEPA_VERSION" ] \
    || fail "the source tree is myjepa $src_version but the definition pins $MYJEPA_VERSION"

"$PYTHON" -m venv --system-site-packages "$VENV"
PY=$VENV/bin/python
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

if ! "$PY" -c 'import torch' 2>/dev/null; then
    [ -n "${TORCH_SPEC:-}" ] || fail "the base python has no torch and TORCH_SPEC is not set"
    if [ -n "${TORCH_INDEX:-}" ]; then
        "$PY" -m pip install --extra-index-url "$TORCH_INDEX" "$TORCH_SPEC"
    else
        "$PY" -m pip install "$TORCH_SPEC"
    fi
fi
torch_version=$("$PY" -W ignore -c 'import torch; print(torch.__version__)') || fail "torch does not import"
echo "torch==$torch_version" >"$ROOT/constraints.txt"
PIP_CONSTRAINT=$ROOT/constraints.txt "$PY" -m pip install "$SRC"
rm -rf "$SRC"

# `myjepa` on the image's PATH names the image on stderr, then runs the real entry point: the
# workflow pipes each command's output into the rule's log, so every log shows the job ran in here.
mkdir -p "$ROOT/bin"
cat >"$ROOT/bin/myjepa" <<WRAPPER
#!/bin/sh
echo "myjepa: in container \${MYJEPA_CONTAINER:-?}" >&2
exec "$VENV/bin/myjepa" "\$@"
WRAPPER
chmod 0755 "$ROOT/bin/myjepa"

installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("myjepa"))')
[ "$installed" = "$MYJEPA_VERSION" ] || fail "installed myjepa $installed, expected $MYJEPA_VERSION"
"$ROOT/bin/myjepa" --help >/dev/null 2>&1 || fail "'myjepa --help' fails in the image"
marker=$(MYJEPA_CONTAINER=check "$ROOT/bin/myjepa" --version 2>&1 >/dev/null)
[ "$marker" = "myjepa: in container check" ] || fail "the myjepa wrapper printed '$marker', not the marker"
"$PY" -c 'import myjepa.models.vit, myjepa.dumps' || fail "the package's modules do not import"

# What went in, for `apptainer exec IMAGE cat /opt/myjepa/image.txt` and bug reports.
{
    echo "myjepa $installed"
    "$PY" -W ignore -c 'import sys, torch
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda)'
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$ROOT/image.txt"
cat "$ROOT/image.txt"
