#!/usr/bin/env bash
# A scale-out control plane on this machine (issue 11 §3): one Mosquitto 2 with dynamic security
# on a free port (its own config, dynsec file and data dir under a temp dir, never the system
# broker), a scratch PostgreSQL database, N control-plane replicas (`edgeloop serve
# --broker-url`, default 3) sharing them, and a simulated fleet (edgeloop-sim, DEVICES, default
# 200) enrolled through the first replica; prints the URLs and the admin token, and stops and
# removes everything on Ctrl-C.
#
#   npm run start:scale-out                            # the same as scripts/scale-out.sh
#   scripts/scale-out.sh                               # 3 replicas, PostgreSQL at postgres://postgres@127.0.0.1:5432
#   REPLICAS=2 DEVICES=1000 PGURL=postgres://me@db:5432 scripts/scale-out.sh
#   KEEP=1 scripts/scale-out.sh                        # keeps the temp dir and the database afterwards
#
# Needs mosquitto, mosquitto_ctrl (Debian: mosquitto, mosquitto-clients) and psql.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
replicas=${REPLICAS:-3}
devices=${DEVICES:-200}
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432}
plugin=${DYNSEC_PLUGIN:-/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so}
for tool in mosquitto mosquitto_ctrl psql node; do
  command -v "$tool" >/dev/null || { echo "scale-out: $tool is missing" >&2; exit 1; }
done
[ -e "$plugin" ] || { echo "scale-out: no dynamic security plugin at $plugin (set DYNSEC_PLUGIN)" >&2; exit 1; }

# Many connections need many descriptors: raised for this script and what it starts, not globally.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/edgeloop-scale-out-XXXXXX")
database="edgeloop_scale_out_$$"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then
    psql -q "$pgurl/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
  else
    echo "kept $work and the database $database"
  fi
}
trap cleanup EXIT INT TERM

# Free TCP ports on 127.0.0.1, chosen by the kernel.
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
secret() { node -e "console.log(require('crypto').randomBytes(24).toString('base64url'))"; }

broker_user=edgeloop
broker_password=$(secret)
admin_token=$(secret)
mqtt_port=$(free_port)

# The control plane's broker user is the dynsec admin: it provisions devices and grants itself
# its own role (edgeloop-control-plane) at start.
mkdir -p "$work/mosquitto"
printf '%s\n%s\n' "$broker_password" "$broker_password" |
  mosquitto_ctrl dynsec init "$work/mosquitto/dynamic-security.json" "$broker_user" >/dev/null
cat >"$work/mosquitto/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous false
persistence true
persistence_location $work/mosquitto/
plugin $plugin
plugin_opt_config_file $work/mosquitto/dynamic-security.json
# Mosquitto keeps 1,000 queued messages per session by default and drops the rest: a replica that
# lags or restarts must find all of its share waiting.
max_queued_messages 1000000
log_dest file $work/mosquitto/mosquitto.log
EOF
# As root, Mosquitto would switch to the mosquitto user, who cannot read the temp dir.
if [ "$(id -u)" = 0 ]; then echo "user root" >>"$work/mosquitto/mosquitto.conf"; fi
mosquitto -c "$work/mosquitto/mosquitto.conf" &
pids+=($!)

psql -q "$pgurl/postgres" -c "CREATE DATABASE $database" >/dev/null

# One data dir for all: it holds the pepper that hashes tokens and device secrets (and the blobs),
# which every replica must share; each replica names its own broker session with --replica-id.
mkdir -p "$work/data"
http_ports=()
for n in $(seq 1 "$replicas"); do
  port=$(free_port)
  http_ports+=("$port")
  EDGELOOP_BROKER_PASSWORD=$broker_password EDGELOOP_ADMIN_TOKEN=$admin_token \
    node "$repo/control-plane/bin/edgeloop.js" serve \
    --host 127.0.0.1 --http-port "$port" --data-dir "$work/data" \
    --database-url "$pgurl/$database" \
    --broker-url "mqtt://127.0.0.1:$mqtt_port" --broker-username "$broker_user" \
    --replica-id "cp-$n" --log-level warn >"$work/replica-$n.log" 2>&1 &
  pids+=($!)
  # One at a time: the first runs the migrations and creates the control plane's role.
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "scale-out: replica $n exited; its log:" >&2
      cat "$work/replica-$n.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done

# The simulated fleet: enrolled through replica 1 (each enrollment provisions a dynsec client), its
# devices connect to Mosquitto, and their messages are stored by whichever replica the shared
# subscription hands them to.
if [ "$devices" -gt 0 ]; then
  node "$repo/simulator/bin/edgeloop-sim.js" --control-plane "http://127.0.0.1:${http_ports[0]}" \
    --token "$admin_token" --devices "$devices" --prefix scale --quiet >"$work/simulator.log" 2>&1 &
  pids+=($!)
fi

echo "edgeloop scale-out: $replicas replicas, one Mosquitto, one PostgreSQL database ($database), $devices simulated devices"
echo "  MQTT (devices)  mqtt://127.0.0.1:$mqtt_port"
for n in $(seq 1 "$replicas"); do echo "  replica cp-$n    http://127.0.0.1:${http_ports[$((n - 1))]}/"; done
echo "  admin token     $admin_token"
echo "  logs            $work"
echo "try   curl -s -H 'authorization: Bearer $admin_token' http://127.0.0.1:${http_ports[$((replicas - 1))]}/api/v1/devices?limit=3"
echo "      curl -sN -H 'authorization: Bearer $admin_token' http://127.0.0.1:${http_ports[$((replicas - 1))]}/api/v1/events"
echo "Ctrl-C stops everything."
wait "${pids[0]}"
