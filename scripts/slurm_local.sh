#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the `slurm` tests and for trying
# `accel slurm submit` without a cluster. Needs root and Debian/Ubuntu packages (SLURM 22.05
# on Debian 12). No systemd needed: munged, slurmctld and slurmd are started directly.
#
#   bash scripts/slurm_local.sh           # install if missing, configure, start, wait for idle
#   bash scripts/slurm_local.sh --stop    # stop the daemons (config and state are kept)
#   bash scripts/slurm_local.sh --status  # show what is running
#
# Idempotent: a second run that finds the cluster up exits 0 without touching it.
# Settings (env): ACCEL_SLURM_PARTITION (default "debug"), ACCEL_SLURM_WAIT (seconds, default 60).
set -euo pipefail

PARTITION=${ACCEL_SLURM_PARTITION:-debug}
WAIT_S=${ACCEL_SLURM_WAIT:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/lib/slurm
LOGS=/var/log/slurm
RUNDIR=/run/slurm
MARK="# written by accel scripts/slurm_local.sh"

say() { echo "[slurm_local] $*"; }
die() { echo "[slurm_local] error: $*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

cluster_up() {
  command -v sinfo >/dev/null 2>&1 || return 1
  pid_alive $RUNDIR/slurmctld.pid && pid_alive $RUNDIR/slurmd.pid || return 1
  local st
  st=$(timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n1) || return 1
  case "$st" in idle|mixed|allocated|completing|idle~|mixed~) return 0 ;; *) return 1 ;; esac
}

stop_daemon() {  # name pidfile
  if pid_alive "$2"; then
    local pid; pid=$(cat "$2")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    say "stopped $1 (pid $pid)"
  else
    say "$1 was not running"
  fi
  rm -f "$2"
}

case "${1:-}" in
  --stop)
    [ "$(id -u)" = 0 ] || die "--stop needs root (the daemons run as root)"
    stop_daemon slurmd $RUNDIR/slurmd.pid
    stop_daemon slurmctld $RUNDIR/slurmctld.pid
    stop_daemon munged $RUNDIR/munged.pid
    exit 0 ;;
  --status)
    for d in munged slurmctld slurmd; do
      if pid_alive $RUNDIR/$d.pid; then say "$d running (pid $(cat $RUNDIR/$d.pid))"; else say "$d not running"; fi
    done
    command -v sinfo >/dev/null 2>&1 && sinfo -N -l || true
    exit 0 ;;
  ""|--start) ;;
  -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option '$1' (use --stop, --status or no option)" ;;
esac

if cluster_up; then
  say "cluster already up: $(sinfo -h -N -o '%N %T %c CPUs, partition %P')"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "needs root to install packages and start the daemons (run with sudo)"

# 1. packages ---------------------------------------------------------------------------
need=()
for b in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
  command -v "${b%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${b%%:*}" ] || need+=("${b##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get: install SLURM (slurmctld, slurmd, client) and munge by hand"
  say "installing ${need[*]} (apt-get)"
  # No init system here: keep the packages' postinst from trying to start services.
  policy=/usr/sbin/policy-rc.d; made_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed (network? proxy?)"
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
    || die "apt-get install slurmctld slurmd slurm-client munge failed"
  if [ $made_policy = 1 ]; then rm -f $policy; trap - EXIT; fi
  say "installed SLURM $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null)"
else
  say "SLURM packages present ($(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo 'version unknown'))"
fi
export PATH=$PATH:/usr/sbin

# 2. munge --------------------------------------------------------------------------------
mkdir -p /etc/munge /var/lib/munge /var/log/munge $RUNDIR /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then mungekey -c -f -k /etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
  say "created munge key /etc/munge/munge.key"
fi
# munged insists that its key, state and socket dirs belong to the user it runs as (root here).
chown -R root:root /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge; chmod 0755 /run/munge; chmod 0400 /etc/munge/munge.key
if pid_alive $RUNDIR/munged.pid && munge -n </dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running"
else
  rm -f /run/munge/munge.socket.2*
  munged --force --pid-file=$RUNDIR/munged.pid || die "munged failed to start (see /var/log/munge/munged.log)"
  munge -n </dev/null | unmunge >/dev/null || die "munged started but a munge/unmunge round trip fails (see /var/log/munge/munged.log)"
  say "started munged (pid $(cat $RUNDIR/munged.pid))"
fi

# 3. slurm.conf ----------------------------------------------------------------------------
host=$(hostname -s)
# `slurmd -C` reports this machine as SLURM sees it (CPUs, sockets, cores, threads, memory):
# declaring exactly that keeps the node from being drained for a config mismatch.
node_line=$(slurmd -C | head -n1)
case "$node_line" in NodeName=*) ;; *) die "'slurmd -C' did not describe this node: $node_line" ;; esac
mkdir -p $CONF_DIR $STATE/slurmctld $STATE/slurmd $LOGS
new_conf=$(cat <<EOF
$MARK; rerun it after changing this machine.
ClusterName=accel-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
# Generous timeouts: a loaded CI machine must not mark its only node down.
SlurmctldTimeout=300
SlurmdTimeout=300
MessageTimeout=60
InactiveLimit=0
# Time between SIGTERM and SIGKILL: room for a trainer to write its preemption checkpoint.
KillWait=60
# Finished jobs stay visible to squeue/scontrol for 5 minutes (there is no accounting DB).
MinJobAge=300
Waittime=0
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)
if [ -f $CONF ] && ! grep -q "^$MARK" $CONF; then
  cp $CONF $CONF.accel-backup.$(date +%s)
  say "backed up a foreign $CONF"
fi
if [ "$(cat $CONF 2>/dev/null)" != "$new_conf" ]; then
  printf '%s\n' "$new_conf" > $CONF
  say "wrote $CONF ($node_line, partition $PARTITION)"
fi

# 4. daemons -----------------------------------------------------------------------------
if pid_alive $RUNDIR/slurmctld.pid; then
  say "slurmctld already running; reconfiguring"; scontrol reconfigure || true
else
  slurmctld || die "slurmctld failed to start; see $LOGS/slurmctld.log"; say "started slurmctld"
fi
if ! pid_alive $RUNDIR/slurmd.pid; then
  slurmd || die "slurmd failed to start; see $LOGS/slurmd.log"; say "started slurmd"
fi

# 5. wait for the node -----------------------------------------------------------------------
for _ in $(seq $((WAIT_S * 2))); do
  if cluster_up; then
    say "cluster up: $(sinfo -h -N -o '%N %T, %c CPUs, %m MB, partition %P')"
    exit 0
  fi
  st=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
  case "$st" in drain*|down*)  # e.g. left down by an earlier unclean stop
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
die "node not idle after ${WAIT_S}s (state: $(sinfo -h -N -o '%T %E' 2>/dev/null || echo '?')); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
