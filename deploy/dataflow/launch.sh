#!/usr/bin/env bash
# Builds the image and the Flex Template, and launches runs on Dataflow. From the repository root:
#   deploy/dataflow/launch.sh build            # image (Cloud Build) + template spec in Cloud Storage
#   deploy/dataflow/launch.sh run RUN_ID       # one run, published as $OUTPUT/RUN_ID/manifest.json
# Settings come from the environment; PROJECT, REGION and BUCKET are required.
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
TAG="${TAG:-$(git rev-parse --short HEAD)}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/mosaic/mosaic-it:${TAG}}"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/mosaic-it-${TAG}.json}"
INPUT="${INPUT:-gs://${BUCKET}/corpus/*.jsonl}"
OUTPUT="${OUTPUT:-gs://${BUCKET}/mosaic}"
EPOCHS="${EPOCHS:-4}"
EPOCH_OFFSET="${EPOCH_OFFSET:-0}"
SEED="${SEED:-0}"

# Workers for 1M-10M records (deploy/README.md, "Sizing", explains these numbers):
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-4}" # 4 vCPUs = 4 Python worker processes, 16 GB: ample for one packing key or shard
MAX_WORKERS="${MAX_WORKERS:-32}"              # a cap for autoscaling: 10M records are ~2-4 vCPU-hours of work
DISK_GB="${DISK_GB:-50}"                      # the image (~4 GB) plus local spill; the shuffle itself runs in Dataflow Shuffle

build() {
  gcloud builds submit . --project "$PROJECT" \
    --config deploy/dataflow/cloudbuild.yaml --substitutions "_IMAGE=${IMAGE}"
  gcloud dataflow flex-template build "$TEMPLATE" --project "$PROJECT" \
    --image "$IMAGE" --sdk-language PYTHON --metadata-file deploy/dataflow/metadata.json
}

launch() {
  local run_id="$1"
  # Pipeline options, one per line; their names are checked against the code by tests/test_deploy_files.py.
  local parameters=(
    "input=${INPUT}"
    "output=${OUTPUT}"
    "run_id=${run_id}"
    "epochs=${EPOCHS}"
    "epoch_offset=${EPOCH_OFFSET}"
    "seed=${SEED}"
    "sdk_container_image=${IMAGE}"
    "disk_size_gb=${DISK_GB}"
  )
  local flags=()
  for parameter in "${parameters[@]}"; do flags+=(--parameters "$parameter"); done
  # A job name: lower-case letters, digits and hyphens; the time keeps reruns of one run id apart.
  local job="mosaic-it-$(echo "$run_id" | tr 'A-Z._' 'a-z--')-$(date -u +%H%M%S)"
  gcloud dataflow flex-template run "$job" --project "$PROJECT" --region "$REGION" \
    --template-file-gcs-location "$TEMPLATE" \
    --temp-location "gs://${BUCKET}/tmp" --staging-location "gs://${BUCKET}/staging" \
    --worker-machine-type "$MACHINE_TYPE" --max-workers "$MAX_WORKERS" \
    "${flags[@]}"
}

case "${1:-}" in
  build) build ;;
  run) launch "${2:?usage: launch.sh run RUN_ID}" ;;
  *) echo "usage: deploy/dataflow/launch.sh build | run RUN_ID" >&2; exit 2 ;;
esac
