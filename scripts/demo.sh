#!/usr/bin/env bash
# The main job, end to end, on the embedded sandbox (no cloud account): two S3 buckets and a read-only key for
# exactly them, rendered into a sample Supervisely install, then proof that the key reads but cannot write.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf demo-out
mkdir -p demo-out
export PROVISION_STATE_DIR="$PWD/demo-out/.provision"
cp examples/supervisely.env demo-out/.env

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
trap 'step provision sandbox down; provision sandbox down' EXIT

step provision sandbox up
provision sandbox up

step provision s3 --env sandbox --prefix demo --readonly
provision s3 --env sandbox --prefix demo --readonly

step provision s3 --env sandbox --prefix demo --readonly "   # again: nothing changes, no new key"
provision s3 --env sandbox --prefix demo --readonly

step provision render-env --env sandbox --out demo-out
provision render-env --env sandbox --out demo-out

step "diff examples/supervisely.env demo-out/.env   # only storage keys changed (secret masked here)"
diff examples/supervisely.env demo-out/.env | sed -E 's/(STORAGE_SECRET_KEY=).*/\1****(masked)/' || true

step "ls -l demo-out"
ls -la demo-out | grep -v '^total'

step provision verify --env sandbox
provision verify --env sandbox
