#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the integration tests and for trying the
# SLURM profile without a cluster. Needs root and Debian's slurm-wlm + munge (22.05).
#
#   scripts/slurm_local.sh install   # apt-get install slurm-wlm munge (once)
#   scripts/slurm_local.sh start     # write the configs, start munged, slurmctld, slurmd
#   scripts/slurm_local.sh status    # sinfo
#   scripts/slurm_local.sh stop      # stop the daemons this script started (by pid)
#
# Two partitions on the one node: "cpu" (default) and "gpu". The node declares one GPU
# backed by /dev/null so that --gpus=1 jobs are scheduled (they see CUDA_VISIBLE_DEVICES=0).
# No accounting daemon: submit with --slurm-status-command squeue --slurm-no-account.
set -euo pipefail

STATE=${SKYSCAN_SLURM_DIR:-/tmp/skyscan-slurm}
CONF_DIR=/etc/slurm
HOST=$(hostname -s)

die() { echo "slurm_local: $*" >&2; exit 1; }

install() {
  [ "$(id -u)" = 0 ] || die "install needs root"
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

write_configs() {
  local cpus mem
  cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it honours OMP_NUM_THREADS
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p "$CONF_DIR" "$STATE"/{spool/ctld,spool/d,log} /etc/munge /run/munge /var/lib/munge /var/log/munge
  cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=skyscan-test
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
GresTypes=gpu
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${HOST} MaxTime=INFINITE State=UP
CONF
  printf 'AutoDetect=off\nName=gpu File=/dev/null\n' > "$CONF_DIR/gres.conf"
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge
  chmod 0400 /etc/munge/munge.key
}

start() {
  [ "$(id -u)" = 0 ] || die "start needs root"
  command -v slurmctld >/dev/null || die "slurm-wlm is not installed (scripts/slurm_local.sh install)"
  write_configs
  if ! (munge -n | unmunge) >/dev/null 2>&1; then  # no working munged yet
    runuser -u munge -- /usr/sbin/munged 2>>"$STATE/log/munged.log" \
      || die "munged failed to start (see $STATE/log/munged.log)"
    pgrep -n -u munge -x munged > "$STATE/munged.pid"  # munge cannot write into $STATE
  fi
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd
  for _ in $(seq 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      sinfo
      return 0
    fi
    sleep 0.5
  done
  cat "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
  die "the node did not come up"
}

stop() {
  for name in slurmd slurmctld; do
    if [ -s "$STATE/$name.pid" ]; then
      kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    fi
  done
  if [ -s "$STATE/munged.pid" ]; then  # only a munged this script started
    kill "$(cat "$STATE/munged.pid")" 2>/dev/null || true
    rm -f "$STATE/munged.pid"
  fi
  for _ in $(seq 40); do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || return 0
    sleep 0.25
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) die "usage: $0 install|start|status|stop" ;;
esac
