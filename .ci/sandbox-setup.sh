#!/usr/bin/env bash
# Sandbox prerequisites for CI (sandbox.md §6): bubblewrap and a running Docker daemon. Runs as root on a
# fresh Debian machine without registry access; exits non-zero with a clear message when dockerd cannot start.
set -euo pipefail

if ! command -v bwrap >/dev/null || ! command -v dockerd >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends bubblewrap docker.io
fi
echo "== $(bwrap --version)"

if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd-ci.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if ! docker info >/dev/null 2>&1; then
  echo "sandbox-setup: dockerd did not start; the docker sandbox tests cannot run. Last lines of /var/log/dockerd-ci.log:" >&2
  tail -n 30 /var/log/dockerd-ci.log >&2 || true
  exit 1
fi
echo "== dockerd $(docker info --format '{{.ServerVersion}}') is answering"
