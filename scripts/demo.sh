#!/usr/bin/env bash
# The main job, end to end, on the embedded sandbox (no cloud account): a Supervisely install whose own storage is
# two S3 buckets with a full key for exactly them, plus a read-only Links connection to an existing dataset bucket;
# rendered into a sample Supervisely directory, then proof from the rendered files, read the way their consumers
# read them (Compose for .env, an S3 client built from STORAGE_*, the Links connection from remote_links.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf demo-out
mkdir -p demo-out
export PROVISION_STATE_DIR="$PWD/demo-out/.provision"
cp examples/supervisely.env demo-out/.env
cp examples/docker-compose.yml demo-out/docker-compose.yml

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
trap 'step provision sandbox down; provision sandbox down' EXIT

step provision sandbox up
provision sandbox up

step provision s3 --env sandbox --prefix demo --full "   # Supervisely's own storage: it writes every upload here"
provision s3 --env sandbox --prefix demo --full

step provision s3 --env sandbox --prefix demo --full "   # again: nothing changes, no new key"
provision s3 --env sandbox --prefix demo --full

step "python scripts/seed_dataset.py demo-datasets   # an existing dataset bucket, made with the admin credential"
python scripts/seed_dataset.py demo-datasets

step provision s3 demo-datasets --readonly --grant datasets --env sandbox "   # a Links connection, read-only"
provision s3 demo-datasets --readonly --grant datasets --env sandbox

step provision render-env --env sandbox --out demo-out
provision render-env --env sandbox --out demo-out

step "diff examples/supervisely.env demo-out/.env   # only the storage keys changed (secret masked here)"
diff examples/supervisely.env demo-out/.env | sed -E 's/(STORAGE_SECRET_KEY=).*/\1****(masked)/' || true

step "cat demo-out/remote_links.yml   # the Links connection, named after its grant (secret masked here)"
sed -E 's/(secret_key: ).*/\1****(masked)/' demo-out/remote_links.yml

step "ls -la demo-out"
ls -la demo-out | grep -v '^total'

step "python scripts/consumer_proof.py demo-out --buckets demo-public,demo-private --readonly datasets"
python scripts/consumer_proof.py demo-out --buckets demo-public,demo-private --readonly datasets

step provision verify --env sandbox
provision verify --env sandbox

printf '\nNext, run provision yourself: . .venv/bin/activate (or call .venv/bin/provision), then e.g.\n'
printf '  provision sandbox up && provision s3 --env sandbox --prefix acme --full   (see README.md)\n'
