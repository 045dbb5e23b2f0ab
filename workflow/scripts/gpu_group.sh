#!/usr/bin/env bash
# One group of the GPU study, run on the GPU machine in a single command (it keeps nothing between commands):
#   bash workflow/scripts/gpu_group.sh <flow_matching|force_field|voxel_denoising|benchmarks> [snakemake args...]
# Installs snakemake and rdkit from .whl (filled by ../shared/gpu-wheels.sh) when they are missing, prepares the
# data, trains and analyses the group's runs with config/gpu.yaml, samples GPU utilisation every 2 s, and copies
# the verified table bundle (no checkpoints, no datasets) and the logs to $OUT/<group>. Back here:
#   python -m eqdyn.export unpack --bundle <fetched>/<group> --root results/gpu
# GPU_SLOTS (default 4) training/analysis jobs share the card: small models leave it idle between kernel launches.
# GPU_CONFIGS (default config/gpu.yaml) lists the config files, e.g. with a scaled-down override for a CPU test.
set -euo pipefail
cd "$(dirname "$0")/../.."
group=${1:?usage: gpu_group.sh GROUP [snakemake args...]}
shift
out=${OUT:?set OUT to the folder that comes back}
if ! python3 -c "import snakemake, rdkit" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl
  export PATH=$PWD/.site/bin:$PATH PYTHONPATH=$PWD/.site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
mkdir -p "$out/$group"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -l 2 \
  > "$out/$group/gpu_utilisation.csv" 2>/dev/null &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/$group/device.csv" 2>/dev/null || true
start=$(date +%s)
status=0
# shellcheck disable=SC2086  # GPU_CONFIGS is a list of files
# the target first: --resources and --configfile take every word after them
snakemake "results/gpu/export/$group" --cores all --resources gpu="${GPU_SLOTS:-4}" \
  --configfile ${GPU_CONFIGS:-config/gpu.yaml} "$@" || status=$?
echo "group $group: snakemake exit $status after $(( $(date +%s) - start )) s" | tee "$out/$group/wall.txt"
if [ -d "results/gpu/export/$group" ]; then cp -rp "results/gpu/export/$group/." "$out/$group/bundle"; fi
cp -r results/gpu/logs "$out/$group/logs" 2>/dev/null || true
exit $status
