# Sourced by the Makefile and CI: keep Ray's start-up probes on this machine (see docs/offline.md).
export HTTP_PROXY=${HTTP_PROXY:-http://127.0.0.1:9} http_proxy=${http_proxy:-http://127.0.0.1:9}
export NO_PROXY=${NO_PROXY:-127.0.0.1,localhost} no_proxy=${no_proxy:-127.0.0.1,localhost}
export RAY_USAGE_STATS_ENABLED=0
# A checkout beside ../shared/datasets (these machines) uses it unless told otherwise.
if [ -z "${PRIORLAB_DATA_DIR:-}" ] && [ -d ../shared/datasets/omniglot ]; then
  export PRIORLAB_DATA_DIR=../shared/datasets
fi
