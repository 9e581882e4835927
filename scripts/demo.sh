#!/usr/bin/env bash
# The main job: runs the demo mesh (examples/demo/app.yaml) in the foreground with `mapmesh up`
# and, once it is ready, prints its URLs and a few commands to try. Ctrl-C stops everything.
# Its state (store, logs) goes to examples/demo/.mapmesh/, git-ignored like every .mapmesh/.
# Arguments go to `mapmesh up`, e.g. `bash scripts/demo.sh --gateway-port 9080 --api-port 7071`
# when the default ports are taken. The registry alone: .venv/bin/python examples/registry_demo.py
set -euo pipefail
cd "$(dirname "$0")/.."
# curl is what the printed commands use; dig (bind9-dnsutils) queries the mesh's DNS.
bash scripts/bootstrap.sh curl bind9-dnsutils

app_file=examples/demo/app.yaml

# Waits until the runner with pid $1 reports its app running, then prints where to look.
# Reads `mapmesh ps -o json`, so the URLs are the ones the runner really uses (ports may have
# been overridden). Gives up quietly when that runner exits (a port in use, a file error: the
# runner says why itself) and after ten minutes, so it can never outlive the demo for long.
announce() {
  local runner=$1 status
  for _ in $(seq 1200); do
    kill -0 "$runner" 2>/dev/null || return 0
    if status=$(.venv/bin/mapmesh ps -f "$app_file" -o json 2>/dev/null); then
      # A runner already running this file answers too: wait for ours (same pid).
      if .venv/bin/python - "$runner" "$app_file" "$status" <<'EOF'; then
import json, os, sys

runner, app_file, status = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
if status["pid"] != runner or status["phase"] != "running":
    sys.exit(1)
gateway = (status.get("gateway") or {}).get("url") or "http://127.0.0.1:8080"
control_plane = status["control_plane"]
dns = f"; DNS on 127.0.0.1:{status['dns_port']}" if status.get("dns_port") else ""
load = "examples/demo/load.py -n 200 -c 4"
if gateway != "http://127.0.0.1:8080":
    load += f" --url {gateway}/"
tries = [
    (f"curl -s {gateway}/", "a home page: servedBy names who answered"),
    (f".venv/bin/python {load}", "200 pages: the worker's 90/10 split"),
    (f".venv/bin/mapmesh ps -f {app_file}", "every replica, its pids and ports"),
]
width = max(len(command) for command, _ in tries)
print(f"""
The demo mesh is running: {len(status["replicas"])} replicas, each with its own sidecar.
  gateway        {gateway}/
  dashboard      {control_plane}/ui
  control plane  {control_plane} (Cloud Map and App Mesh APIs{dns})

Try, in another terminal from {os.getcwd()}:""")
for command, why in tries:
    print(f"  {command.ljust(width)}  # {why}")
print("""
More (kill a replica, trip the circuit breaker, scale) in examples/README.md.
Ctrl-C stops everything.
""", flush=True)
EOF
        return 0
      fi
    fi
    sleep 0.5
  done
}

# The announcer runs detached from this shell (the inner subshell exits at once), so after the
# exec below it is not a child of the runner and the runner's process tree is only its own.
(announce "$$" &)

# exec: the runner takes this shell's pid and place in the terminal, so Ctrl-C and a SIGTERM
# sent to this script reach it exactly once and it stops everything it started. (A trap that
# forwarded the signal would deliver Ctrl-C twice, once from the terminal, once forwarded, and
# a second signal makes the runner kill everything at once instead of stopping in order.)
exec .venv/bin/mapmesh up -f "$app_file" "$@"
