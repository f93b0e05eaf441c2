#!/bin/sh
# Showers/s of caloflow-cpp-client against the demo models (what `make serve` serves), next to the same
# request over HTTP (POST /generate, npy) from curl, so the two figures come from one run on one machine.
#
#   clients/cpp/bench-demo.sh [COUNT] [RUNS]      (from the repository root; default 10000 photons, 3 runs)
#
# Starts `caloflow serve --repo model_repo` on free loopback ports, prints one line per run, stops it.
set -eu
COUNT=${1:-10000}
RUNS=${2:-3}
CLIENT=${CALOFLOW_CPP_BUILD_DIR:-clients/cpp/build}/caloflow-cpp-client
[ -x "$CLIENT" ] || { echo "build first: cmake -S clients/cpp -B clients/cpp/build && cmake --build clients/cpp/build -j2" >&2; exit 1; }
LOG=$(mktemp)
OUT=$(mktemp)
.venv/bin/caloflow serve --repo model_repo --host 127.0.0.1 --http-port 0 --grpc-port 0 --metrics-port 0 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -f "$LOG" "$OUT"' EXIT
i=0
until grep -q "caloflow-serve ready" "$LOG"; do
    i=$((i + 1)); [ $i -lt 1200 ] || { cat "$LOG" >&2; exit 1; }
    kill -0 $SERVER 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
GRPC=$(sed -n 's/.*caloflow-serve ready: http=[0-9]* grpc=\([0-9]*\).*/\1/p' "$LOG")
HTTP=$(sed -n 's/.*caloflow-serve ready: http=\([0-9]*\).*/\1/p' "$LOG")
"$CLIENT" --server "127.0.0.1:$GRPC" --particle photon --energy-mev 65536 --count 1000 --seed 99 >/dev/null  # warm-up
for run in $(seq "$RUNS"); do
    "$CLIENT" --server "127.0.0.1:$GRPC" --particle photon --energy-mev 65536 --count "$COUNT" --seed "$run" \
        --out "$OUT" | sed -n "s/^count=/cpp-grpc run=$run count=/p"
    curl -s -o "$OUT" -w "http-curl run=$run count=$COUNT time_s=%{time_total} bytes=%{size_download}\n" \
        -X POST "http://127.0.0.1:$HTTP/generate" -H 'Accept: application/x-npy' \
        -d "{\"particle\": \"photon\", \"energy_mev\": 65536, \"count\": $COUNT, \"seed\": $run}"
done
