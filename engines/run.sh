#!/usr/bin/env bash
# make test-engines: the scale-out promises against the real engines, on this machine.
#
# Starts a one-node SLURM cluster (munged, slurmctld, slurmd on localhost, accounting off, as a
# small cluster often has it) and a throwaway PostgreSQL server on a free local port, runs
# engines/test_*.py against them, and stops and removes everything it started, passed or failed.
# Installs slurm-wlm, munge and this project's [postgres] extra where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if [ "$(id -u)" != 0 ]; then
  echo "make test-engines: needs root (it installs slurm-wlm and munge with apt-get and starts munged, slurmctld, slurmd and a PostgreSQL server); run it as root" >&2
  exit 2
fi
for tool in initdb pg_ctl; do
  command -v "$tool" >/dev/null || { echo "make test-engines: needs PostgreSQL's $tool on PATH (apt-get install postgresql)" >&2; exit 2; }
done
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "[engines] installing slurm-wlm and munge" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
"$PY" -c "import psycopg" 2>/dev/null || "$PY" -m pip install -q -e ".[postgres]"

WORK=$(mktemp -d /tmp/engines.XXXXXX)
chmod 755 "$WORK"
PIDS=()
STEPDS_BEFORE=" $(pgrep -x slurmstepd | tr '\n' ' ' || true) "  # a cluster's of this machine: left alone
stop() {  # TERM, up to 10 s to go, then KILL: nothing of ours outlives the run
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  code=$?
  trap - EXIT INT TERM
  if [ -n "${SLURM_CONF:-}" ]; then
    scancel --user=root >/dev/null 2>&1 || true
    for _ in $(seq 25); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop "${PIDS[$i]}"; done  # slurmd, slurmctld, munged
  for pid in $(pgrep -x slurmstepd || true); do
    case "$STEPDS_BEFORE" in *" $pid "*) ;; *) kill -9 "$pid" 2>/dev/null || true ;; esac
  done
  [ -f "$WORK/pg/postmaster.pid" ] && runuser -u postgres -- pg_ctl -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  if [ "$code" != 0 ] && [ -n "${ENGINES_KEEP:-}" ]; then echo "[engines] kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$code"
}
trap cleanup EXIT INT TERM

free_port() { "$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# --- munge: the authentication SLURM's daemons share ---------------------------------------
mkdir -p "$WORK/munge"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
munged --force --foreground --num-threads=4 --key-file="$WORK/munge/munge.key" --socket="$WORK/munge/munge.socket" \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/seed" \
  >/dev/null 2>&1 &
PIDS+=($!)

# --- a one-node SLURM cluster ------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$WORK/slurm/state" "$WORK/slurm/spool"
cat > "$WORK/slurm/slurm.conf" <<CONF
ClusterName=engines
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.socket
StateSaveLocation=$WORK/slurm/state
SlurmdSpoolDir=$WORK/slurm/spool
SlurmctldPidFile=$WORK/slurm/slurmctld.pid
SlurmdPidFile=$WORK/slurm/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
SchedulerParameters=sched_interval=1
MinJobAge=600
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$WORK/slurm/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" >/dev/null 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >/dev/null 2>&1 &
PIDS+=($!)

# --- a throwaway PostgreSQL server -------------------------------------------------------------
PG_PORT=$(free_port)
mkdir -p "$WORK/pg" "$WORK/pgrun" && chown postgres "$WORK/pg" "$WORK/pgrun" && chmod 700 "$WORK/pg"
runuser -u postgres -- initdb -D "$WORK/pg" -U postgres -A trust >/dev/null
runuser -u postgres -- pg_ctl -D "$WORK/pg" -l "$WORK/pgrun/pg.log" -w \
  -o "-p $PG_PORT -k $WORK/pgrun -c listen_addresses=127.0.0.1" start >/dev/null
for db in optuna mlflow; do
  runuser -u postgres -- createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres "$db"
done
export ENGINES_POSTGRES="postgresql://postgres@127.0.0.1:$PG_PORT"

for _ in $(seq 120); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
if [ "$state" != idle ]; then
  echo "[engines] the SLURM node did not come up (state: ${state:-none}); logs in $WORK/slurm" >&2
  tail -20 "$WORK/slurm/slurmctld.log" "$WORK/slurm/slurmd.log" >&2 || true
  exit 1
fi
echo "[engines] $(sinfo --version), $(postgres --version 2>/dev/null || runuser -u postgres -- pg_ctl --version)" >&2
export ENGINES_SLURM=1
"$PY" -m pytest engines -p no:cacheprovider "$@"
