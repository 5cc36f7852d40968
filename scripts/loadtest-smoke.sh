#!/usr/bin/env bash
# Smoke run of the load tests (compose/k6): every scenario for 20 s at a reduced
# rate against the embedded server on 127.0.0.1, which this script builds, seeds
# and starts on a fresh database, then stops.
#
#   scripts/loadtest-smoke.sh            # or: make loadtest-smoke
#
# Environment (all optional):
#   SMOKE_RATE_SCALE   rate multiplier of every scenario (default 0.05: baseline 50,
#                      peak 150, spike 500, endurance 100 requests/s)
#   SMOKE_DURATION     duration of each scenario (default 20s)
#   SMOKE_SCENARIOS    which scenarios (default "baseline peak spike endurance")
#   SMOKE_PROGRAMS     demo programs seeded (default 200)
#   SMOKE_OUT          where summaries and logs go (default bin/loadtest-smoke)
#   SMOKE_DATABASE_SERVER  PostgreSQL server of the fresh database
#                      (default postgres://postgres@127.0.0.1:5432)
#
# Writes SMOKE_OUT/k6-<scenario>.json (k6 --summary-export) and k6-<scenario>.log,
# prints each scenario's thresholds, and exits non-zero when one failed. All traffic
# goes to 127.0.0.1 (k6's usage report is off); the server and the database are
# removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

rate_scale=${SMOKE_RATE_SCALE:-0.05}
duration=${SMOKE_DURATION:-20s}
scenarios=${SMOKE_SCENARIOS:-baseline peak spike endurance}
programs=${SMOKE_PROGRAMS:-200}
out=${SMOKE_OUT:-bin/loadtest-smoke}
db_server=${SMOKE_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
k6_version=$(tr -d '[:space:]' <compose/k6/k6-version.txt)

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
db_name="mediamesh_smoke_$(date +%s)_$$"
server_pid=""

cleanup() {
	local rc=$?
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	if command -v psql >/dev/null; then
		psql -q "$db_server/postgres?sslmode=disable" -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" >/dev/null 2>&1 ||
			echo "note: could not drop database $db_name" >&2
	else
		echo "note: psql not found; drop database $db_name by hand" >&2
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- k6 (pinned) -------------------------------------------------------------
k6=""
for candidate in "$(command -v k6 || true)" "$(go env GOPATH)/bin/k6"; do
	if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" version 2>/dev/null | grep -q "k6 $k6_version "; then
		k6=$candidate
		break
	fi
done
if [ -z "$k6" ]; then
	echo "installing k6 $k6_version (go install go.k6.io/k6@$k6_version, about 2 minutes)"
	go install "go.k6.io/k6@$k6_version"
	k6="$(go env GOPATH)/bin/k6"
fi
"$k6" version

# --- the embedded server on a fresh database ----------------------------------
echo "building mediamesh"
go build -o "$work/mediamesh" ./cmd/mediamesh

# A free port below the ephemeral range (32768+), where a kernel-chosen port could
# collide with old client sockets.
port=""
for _ in $(seq 1 100); do
	candidate=$((20000 + RANDOM % 10000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
		port=$candidate
		break
	fi
done
[ -n "$port" ] || { echo "no free port in [20000, 30000)"; exit 1; }

export MEDIAMESH_DATABASE_URL="$db_server/$db_name?sslmode=disable"
export MEDIAMESH_HTTP_ADDR="127.0.0.1:$port"
export MEDIAMESH_DATA_DIR="$work/data"
export MEDIAMESH_CDN_BASE_URL=""

echo "seeding $programs demo programs into $db_name"
"$work/mediamesh" seed --programs "$programs" 2>"$out/seed.log"

"$work/mediamesh" serve 2>"$out/server.log" &
server_pid=$!
base_url=""
for _ in $(seq 1 300); do
	base_url=$(sed -n 's/.*"msg":"listening".*"url":"\([^"]*\)".*/\1/p' "$out/server.log" | head -1)
	[ -n "$base_url" ] && break
	kill -0 "$server_pid" 2>/dev/null || { echo "server exited:"; tail -20 "$out/server.log"; exit 1; }
	sleep 0.1
done
[ -n "$base_url" ] || { echo "server did not report its address within 30 s"; tail -20 "$out/server.log"; exit 1; }
case "$base_url" in
http://127.0.0.1:*) ;;
*) echo "refusing to load $base_url: the smoke test only targets 127.0.0.1"; exit 1 ;;
esac
echo "server at $base_url"

# Ready, and the projections have caught up with the seed.
for _ in $(seq 1 300); do
	curl -fsS "$base_url/health/ready" >/dev/null 2>&1 && break
	sleep 0.1
done
caught_up=""
for _ in $(seq 1 600); do
	code=$(curl -s -o "$work/programs.json" -w '%{http_code}' "$base_url/v1/programs?limit=1" || true)
	if [ "$code" = 200 ] && grep -q "\"total\":$programs" "$work/programs.json"; then
		caught_up=yes
		break
	fi
	if [ "$code" = 404 ] || [ "$code" = 405 ]; then
		echo "warning: GET /v1/programs answers $code: this build does not serve discovery yet"
		break
	fi
	sleep 0.1
done
[ -n "$caught_up" ] || echo "warning: the catalog does not list the $programs seeded programs; running anyway"

editor_token=$("$work/mediamesh" token --role editor --subject k6-smoke 2>/dev/null)

# --- the scenarios ------------------------------------------------------------
failed=0
declare -A result
for s in $scenarios; do
	echo
	echo "=== $s: ${duration} at ${rate_scale}× the scenario's rate"
	set +e
	K6_NO_USAGE_REPORT=true "$k6" run --quiet --no-usage-report \
		-e BASE_URL="$base_url" -e EDITOR_TOKEN="$editor_token" \
		-e RATE_SCALE="$rate_scale" -e DURATION="$duration" \
		--summary-export "$out/k6-$s.json" "compose/k6/$s.js" >"$out/k6-$s.log" 2>&1
	rc=$?
	set -e
	case $rc in
	0) result[$s]="pass" ;;
	99) result[$s]="FAIL (thresholds)"; failed=1 ;;
	*) result[$s]="FAIL (k6 exit $rc)"; failed=1 ;;
	esac
	# k6's own summary: the thresholds and the request counts.
	sed -n '/THRESHOLDS/,/^$/p;/TOTAL RESULTS/,/^$/p;/http_req_failed/p;/dropped_iterations/p;/level=error/p' "$out/k6-$s.log" | head -40
	if { [ "$rc" = 0 ] || [ "$rc" = 99 ]; } && command -v jq >/dev/null && [ -s "$out/k6-$s.json" ]; then
		jq -r --arg s "$s" '
			.metrics as $m
			| ["http_req_duration{phase:load}", "http_req_failed{phase:load}"][]
			| . as $name
			| ($m[$name].thresholds // {}) | to_entries[]
			| "\($s): \($name) \(.key) \(if .value then "FAILED" else "ok" end)"' "$out/k6-$s.json"
	fi
done

echo
echo "=== summary (details in $out)"
for s in $scenarios; do
	printf '  %-10s %s\n' "$s" "${result[$s]}"
done
exit $failed
