#!/usr/bin/env bash
# Prints a compose override with one worker per GPU for GPUs 2..N-1, beside the two that
# docker-compose.yml defines (each container sees only its own device, as GPU 0). The extra
# workers read their settings from deploy/.env.
#   bash deploy/compose-gpus.sh N > docker-compose.gpus.yml
#   docker compose --env-file deploy/.env -f docker-compose.yml -f docker-compose.gpus.yml up -d
set -euo pipefail
count="${1:?usage: compose-gpus.sh NUMBER_OF_GPUS}"
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "NUMBER_OF_GPUS must be a positive integer" >&2; exit 2; }
echo "services:"
if [ "$count" -lt 2 ]; then
    echo "  worker-gpu1: {profiles: [\"unused\"]}"
fi
for ((gpu = 2; gpu < count; gpu++)); do
cat <<YAML
  worker-gpu${gpu}:
    image: latent-spectra-worker:latest
    command: ["spectra", "worker", "--gpus", "0"]
    env_file: [deploy/.env]
    volumes: ["torch-cache:/var/lib/spectra/torch"]
    depends_on:
      migrate: {condition: service_completed_successfully}
      redis: {condition: service_healthy}
    restart: unless-stopped
    stop_grace_period: 2m
    deploy:
      resources:
        reservations:
          devices: [{driver: nvidia, device_ids: ["${gpu}"], capabilities: [gpu]}]
YAML
done
