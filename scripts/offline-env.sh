# Sourced by the Makefile and CI: keep Ray's start-up probes on this machine (see docs/offline.md).
export HTTP_PROXY=${HTTP_PROXY:-http://127.0.0.1:9} http_proxy=${http_proxy:-http://127.0.0.1:9}
export NO_PROXY=${NO_PROXY:-127.0.0.1,localhost} no_proxy=${no_proxy:-127.0.0.1,localhost}
export RAY_USAGE_STATS_ENABLED=0
# A checkout beside ../shared/datasets (these machines) uses it unless told otherwise; elsewhere
# the data root is the default ~/.cache/priorlab (same rule as tests/conftest.py).
# PRIORLAB_DATA_MIRROR=file:///path/to/a/data/root makes `priorlab data download` copy from there;
# an http(s) mirror host bypasses the dead loopback proxy set above (Ray's probes still hit it).
if [[ "${PRIORLAB_DATA_MIRROR:-}" =~ ^https?://([^/:@]+) ]] && [ "$http_proxy" = http://127.0.0.1:9 ]; then
  export NO_PROXY="$NO_PROXY,${BASH_REMATCH[1]}" no_proxy="$no_proxy,${BASH_REMATCH[1]}"
fi
if [ -z "${PRIORLAB_DATA_DIR:-}" ] && [ -d ../shared/datasets ]; then
  export PRIORLAB_DATA_DIR=../shared/datasets
fi
