#!/usr/bin/env bash
# A real one-node SLURM on this machine, for testing daskgmm's dask-jobqueue
# path (tests/test_slurm.py, deploy/run_jobqueue_fit.py --system slurm).
#
#   bash deploy/slurm/setup_local_slurm.sh          # install if needed, start, wait until idle
#   bash deploy/slurm/setup_local_slurm.sh status   # show daemons, node and queue
#   bash deploy/slurm/setup_local_slurm.sh stop     # cancel all jobs, stop the daemons
#
# Debian/Ubuntu, as root, no systemd needed. It installs Debian's Slurm
# (slurmctld, slurmd, slurm-client) and munge with apt-get when they are
# missing, writes /etc/slurm/slurm.conf for one node named `hostname -s`
# (CPUs and memory as `slurmd -C` measures them, no cgroups, no accounting)
# with one partition `debug` (Default=YES), starts munged, slurmctld and
# slurmd as plain daemons (logs in /var/log/slurm/) and waits until `sinfo`
# shows the node idle. Running it again is a no-op when all is up; a changed
# configuration restarts the daemons. It never overwrites a slurm.conf it did
# not write: a machine with a real SLURM is left alone.
#
# Exit status: 0 up (or stopped); 1 failed; 3 cannot run here (not Linux, not
# root, no apt-get, or a slurm.conf this script did not write).
set -euo pipefail

ACTION=${1:-start}
NODE=$(hostname -s)
PARTITION=debug
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARKER="# Written by daskgmm deploy/slurm/setup_local_slurm.sh"
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
WAIT_S=${SLURM_SETUP_WAIT_S:-120}
UP_FILE=/run/daskgmm-local-slurm.up  # when and how fast the daemons last came up
STARTED=0

say() { echo "setup_local_slurm: $*"; }
cannot() { say "cannot run here: $*" >&2; exit 3; }
die() { say "error: $*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || cannot "not Linux ($(uname -s))"
[ "$(id -u)" = 0 ] || cannot "needs root (starts slurmctld/slurmd/munged, writes $CONF)"

proc_alive() {  # proc_alive PID NAME: PID is a live (not zombie) process named NAME
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }  # "<pid> (<comm>) <state> ..." -> "<state> ..."
    case ${stat%% *} in Z|X|x) return 1 ;; esac
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

pid_alive() {  # pid_alive PIDFILE: the daemon named like the file runs
    local pid
    pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] || return 1  # the daemon may remove it meanwhile
    proc_alive "$pid" "$(basename "$1" .pid)"
}

stop_daemon() {  # stop_daemon NAME PIDFILE
    local pid
    pid=$(cat "$2" 2>/dev/null) || true
    if [ -z "$pid" ] || ! proc_alive "$pid" "$1"; then rm -f "$2"; return 0; fi
    kill "$pid" 2>/dev/null || true
    # Wait for the process itself: slurmctld empties its pid file at once,
    # then saves its state before it exits.
    for _ in $(seq 300); do
        proc_alive "$pid" "$1" || { rm -f "$2"; say "stopped $1 (pid $pid)"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$2"
    say "killed $1 (pid $pid) after 30 s"
}

ours() {  # our config is installed (or none is)
    [ ! -e "$CONF" ] || head -n 1 "$CONF" | grep -xF "$MARKER" >/dev/null
}

stop_all() {
    ours || cannot "$CONF was not written by this script; not stopping a real SLURM"
    if command -v scancel >/dev/null && pid_alive /run/slurmctld.pid; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            # shellcheck disable=SC2086
            scancel $jobs || true
            say "cancelled job(s) $jobs"
        fi
    fi
    stop_daemon slurmd /run/slurmd.pid
    stop_daemon slurmctld /run/slurmctld.pid
    stop_daemon munged /run/munge/munged.pid
    rm -f "$UP_FILE"
}

show_status() {
    for d in munged:/run/munge/munged.pid slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid; do
        if pid_alive "${d#*:}"; then say "${d%%:*} running (pid $(cat "${d#*:}"))"
        else say "${d%%:*} not running"; fi
    done
    if pid_alive /run/slurmctld.pid; then sinfo; squeue; fi
}

case $ACTION in
    start) ;;
    stop) stop_all; exit 0 ;;
    status) show_status; exit 0 ;;
    *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac

ours || cannot "$CONF exists and was not written by this script (a real SLURM?); leaving it alone"

T0=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

# --- packages ------------------------------------------------------------
install_packages() {
    command -v apt-get >/dev/null || cannot "no apt-get: install slurmctld, slurmd, slurm-client and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    local apt_log=/tmp/daskgmm-slurm-apt.log apt=(apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    local packages=(slurmctld slurmd slurm-client munge)
    if ! apt-cache policy slurmctld 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
        say "apt-get update"
        "${apt[@]}" update -qq >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get update failed"; }
    fi
    say "apt-get install ${packages[*]}"
    "${apt[@]}" install -y -qq --no-install-recommends "${packages[@]}" >>"$apt_log" 2>&1 \
        || { tail -n 20 "$apt_log" >&2; die "apt-get install failed (log: $apt_log)"; }
}
for bin in slurmctld slurmd sbatch squeue sinfo scontrol munged; do
    command -v "$bin" >/dev/null || { install_packages; break; }
done
for bin in slurmctld slurmd sbatch squeue sinfo scontrol munged; do
    command -v "$bin" >/dev/null || die "$bin missing after installing the packages"
done

# --- munge ---------------------------------------------------------------
# Debian's munge package creates the key; make one if it is missing.
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! pid_alive /run/munge/munged.pid; then
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged </dev/null >>"$LOG_DIR/munged.stdout" 2>&1 \
        || die "munged did not start (see /var/log/munge/munged.log)"
    say "started munged"
fi
for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"

# --- slurm.conf -----------------------------------------------------------
# Hardware as slurmd measures it: "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105"
HW=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
case $HW in *CPUs=*RealMemory=*) ;; *) die "unexpected 'slurmd -C' output: $HW" ;; esac

NEW_CONF=$(cat <<EOF
$MARKER
# A one-node test cluster: no cgroups, no accounting, munge authentication.
ClusterName=daskgmm-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=10
NodeName=$NODE NodeAddr=127.0.0.1 $HW State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
CHANGED=0
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
    printf '%s\n' "$NEW_CONF" >"$CONF.tmp.$$"
    mv -f "$CONF.tmp.$$" "$CONF"
    CHANGED=1
    say "wrote $CONF (node $NODE: $HW; partition $PARTITION)"
fi

# --- daemons ------------------------------------------------------------
if [ "$CHANGED" = 1 ]; then
    stop_daemon slurmd /run/slurmd.pid
    stop_daemon slurmctld /run/slurmctld.pid
fi
# Plain daemons (they fork and detach); their stdio goes to log files so they
# never hold a caller's pipe (CI's log) open.
if ! pid_alive /run/slurmctld.pid; then
    slurmctld </dev/null >>"$LOG_DIR/slurmctld.stdout" 2>&1 \
        || { tail -n 20 "$LOG_DIR/slurmctld.log" >&2 || true; die "slurmctld did not start"; }
    say "started slurmctld"
    STARTED=1
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep UP >/dev/null && break; sleep 0.2; done
scontrol ping | grep UP >/dev/null || { tail -n 20 "$LOG_DIR/slurmctld.log" >&2 || true; die "slurmctld does not answer"; }
if ! pid_alive /run/slurmd.pid; then
    slurmd </dev/null >>"$LOG_DIR/slurmd.stdout" 2>&1 \
        || { tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true; die "slurmd did not start"; }
    say "started slurmd"
    STARTED=1
fi

# --- wait for the node ----------------------------------------------------
STATE=
for _ in $(seq $((WAIT_S * 4))); do
    STATE=$(sinfo -h -N -n "$NODE" -p "$PARTITION" -o %T 2>/dev/null | head -n 1)
    case $STATE in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|fail*)  # e.g. left down by an unclean stop
            scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.25
done
case $STATE in
    idle|mixed|allocated|completing) ;;
    *) sinfo -N -l >&2 || true; tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
       die "node $NODE is '${STATE:-unknown}' after ${WAIT_S}s" ;;
esac
if [ "$STARTED" = 1 ] || [ ! -s "$UP_FILE" ]; then
    echo "came up in $(elapsed) s at $(date -Iseconds)" >"$UP_FILE"
    say "node $NODE $STATE in partition $PARTITION after $(elapsed) s"
else
    say "node $NODE $STATE in partition $PARTITION (already up: $(cat "$UP_FILE"))"
fi
