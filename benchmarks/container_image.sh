#!/usr/bin/env bash
# Build time and size of the CI image (containers/myjepa-ci.def), and what a container start costs:
#   benchmarks/container_image.sh
# Sets apptainer up when needed (.ci/apptainer), then builds the image afresh (MYJEPA_CI_REBUILD=1)
# and times `apptainer test` and a torch op through `apptainer exec` against the same op on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s.%N)
eval "$(MYJEPA_CI_REBUILD=1 .ci/apptainer)"
build_s=$(echo "$(date +%s.%N) - $start" | bc)
[ -n "${MYJEPA_CI_IMAGE:-}" ] || { echo "no image: ${MYJEPA_APPTAINER_SKIP:-${MYJEPA_CI_IMAGE_ERROR:-?}}" >&2; exit 1; }
op='import time, torch; t = time.perf_counter(); x = torch.randn(256, 256); (x @ x).sum().item(); print("import+op ok")'
timed() {  # seconds of wall time, best of 3
    local best=999 i t0 t
    for i in 1 2 3; do
        t0=$(date +%s.%N); "$@" >/dev/null; t=$(echo "$(date +%s.%N) - $t0" | bc)
        best=$(echo "if ($t < $best) $t else $best" | bc)
    done
    printf '%.2f' "$best"
}
echo "image:                 $MYJEPA_CI_IMAGE"
echo "apptainer:             $("$MYJEPA_APPTAINER" --version)"
printf 'build (setup cached):  %.0f s\n' "$build_s"
echo "image size:            $(du -m "$MYJEPA_CI_IMAGE" | cut -f1) MB"
echo "apptainer test:        $(timed "$MYJEPA_APPTAINER" test "$MYJEPA_CI_IMAGE") s"
echo "exec python+torch op:  $(timed "$MYJEPA_APPTAINER" exec "$MYJEPA_CI_IMAGE" python -c "$op") s"
echo "host python+torch op:  $(timed .venv/bin/python -c "$op") s"
