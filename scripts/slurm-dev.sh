#!/usr/bin/env bash
# slurm-dev.sh - bring up / tear down a real, local, throw-away SLURM cluster
# (Debian's Slurm 22.05 + MUNGE + optional slurmdbd/MariaDB) for trying
# mcompile and for CI tests.  Everything lives under one directory; nothing is
# written to /etc/slurm.  See scripts/README-slurm-dev.md.
#
#   slurm-dev.sh install
#   slurm-dev.sh up [--nodes N] [--accounting dbd|filetxt] [--max-array-size N]
#                   [--gpus-per-node N] [--port-base P] [--dir DIR]
#   slurm-dev.sh down   [--dir DIR]
#   slurm-dev.sh status [--dir DIR]
#   slurm-dev.sh env    [--dir DIR]        # eval "$(slurm-dev.sh env)"
set -euo pipefail

PROG=slurm-dev.sh
DIR=${MCOMPILE_SLURM_DIR:-/tmp/mcompile-slurm}
NODES=1
ACCOUNTING=dbd
MAX_ARRAY_SIZE=1001
GPUS_PER_NODE=2
PORT_BASE=
WAIT_SECS=${SLURM_DEV_WAIT:-30}
CLUSTER_NAME=mcompile
GPU_TYPE=testgpu
DB_NAME=slurm_acct_db
DB_USER=slurm

BASE_PKGS=(slurmctld slurmd slurm-client munge)
DBD_PKGS=(slurmdbd mariadb-server)

# ---------------------------------------------------------------- helpers
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# die MESSAGE [LOGFILE...]: one-line error, then the tail of each given log.
die() {
    local msg=$1 f
    shift
    for f in "$@"; do
        if [[ -s $f ]]; then
            printf -- '---- tail of %s ----\n' "$f" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
    printf '%s: error: %s\n' "$PROG" "$msg" >&2
    exit 1
}

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (starts slurmd/munged and may apt-get install)"
}

# Paths, all derived from DIR.
set_paths() {
    [[ -n $DIR && $DIR != / ]] || die "refusing to use DIR='$DIR'"
    [[ $DIR != *[[:space:],=\'\"]* ]] || die "DIR must not contain blanks, commas, '=' or quotes: '$DIR'"
    case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
    DIR=${DIR%/}
    ETC=$DIR/etc
    RUN=$DIR/run
    LOGD=$DIR/log
    STATE=$DIR/state
    SPOOL=$DIR/spool
    MUNGE_DIR=$DIR/munge
    MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
    DB_DIR=$DIR/mysql
    DB_SOCKET=$DIR/mysql.sock
    TMPROOT=$DIR/tmp
    DEVDIR=$DIR/dev
    SLURM_CONF_FILE=$ETC/slurm.conf
    SETTINGS=$DIR/cluster.settings
}

# Port base derived from DIR so that clusters in different DIRs do not clash.
# Range 10000..31990 (below the Linux ephemeral range).
default_port_base() {
    local sum
    sum=$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)
    echo $((10000 + (sum % 2200) * 10))
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Is PID alive?  A zombie (State: Z) counts as exited: PID 1 here reaps late.
pid_alive() {
    local pid=$1 st
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/status ]] || return 1
    st=$(awk '/^State:/ {print $2; exit}' "/proc/$pid/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# Print the pid recorded in pid file $1 if that process is alive and its
# command name is $2 (guards against pid reuse); otherwise fail.
pid_of() {
    local file=$1 name=$2 pid comm
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    pid_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "${name:0:15}" ]] || return 1
    echo "$pid"
}

# wait_pidfile FILE NAME LOG: wait until FILE names a live NAME process.
wait_pidfile() {
    local file=$1 name=$2 logf=$3 end=$((SECONDS + WAIT_SECS))
    while ((SECONDS < end)); do
        pid_of "$file" "$name" >/dev/null && return 0
        sleep 0.1
    done
    die "$name did not start (no live pid in $file)" "$logf"
}

# stop_pid FILE NAME: SIGTERM the recorded pid, wait, SIGKILL if needed.
stop_pid() {
    local file=$1 name=$2 pid i
    if ! pid=$(pid_of "$file" "$name"); then
        rm -f "$file"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        pid_alive "$pid" && die "could not stop $name (pid $pid)"
    fi
    log "stopped $name (pid $pid)"
    rm -f "$file"
}

node_names() {
    local i
    for ((i = 1; i <= NODES; i++)); do echo "n$i"; done
}

load_settings() {
    [[ -r $SETTINGS ]] || return 1
    # shellcheck disable=SC1090
    source "$SETTINGS"
}

# Daemons of the cluster in start order: "pidfile name log" per line.
daemon_table() {
    echo "$RUN/munged.pid munged $LOGD/munged.log"
    if [[ $ACCOUNTING == dbd ]]; then
        echo "$RUN/mariadbd.pid mariadbd $LOGD/mariadbd.log"
        echo "$RUN/slurmdbd.pid slurmdbd $LOGD/slurmdbd.log"
    fi
    echo "$RUN/slurmctld.pid slurmctld $LOGD/slurmctld.log"
    local n
    for n in $(node_names); do
        echo "$RUN/slurmd-$n.pid slurmd $LOGD/slurmd-$n.log"
    done
}

all_daemons_up() {
    local file name logf
    while read -r file name logf; do
        pid_of "$file" "$name" >/dev/null || return 1
    done < <(daemon_table)
}

# ---------------------------------------------------------------- install
missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

cmd_install() {
    need_root
    local missing
    mapfile -t missing < <(missing_pkgs "${BASE_PKGS[@]}" "${DBD_PKGS[@]}")
    if ((${#missing[@]} == 0)); then
        log "all packages already installed"
        return 0
    fi
    log "installing: ${missing[*]}"
    local apt_opts=(-qq -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    local out=/tmp/slurm-dev-apt.$$.log try
    # apt-get update does not wait for a lists lock held by another apt run.
    for try in 1 2 3 4 5 6; do
        DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >"$out" 2>&1 && break
        ((try < 6)) || die "apt-get update failed" "$out"
        sleep 5
    done
    # Debian's maintainer scripts would try to start the services; a
    # policy-rc.d that forbids it is normal in containers.  We start every
    # daemon ourselves, so make sure nothing is started here either way.
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        # shellcheck disable=SC2064 # expand now: remove exactly this file
        trap "rm -f '$policy'" EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
        --no-install-recommends "${missing[@]}" >>"$out" 2>&1 ||
        die "apt-get install ${missing[*]} failed" "$out"
    rm -f "$out"
    log "installed: ${missing[*]}"
}

# ---------------------------------------------------------------- config
write_configs() {
    local host cfg cpus boards sockets cores threads mem
    host=$(hostname -s)
    cfg=$(slurmd -C 2>/dev/null | head -n 1) || die "slurmd -C failed"
    cpus=$(sed -n 's/.*[[:space:]]CPUs=\([0-9]*\).*/\1/p' <<<"$cfg")
    boards=$(sed -n 's/.*Boards=\([0-9]*\).*/\1/p' <<<"$cfg")
    sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$cfg")
    cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$cfg")
    threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$cfg")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$cfg")
    [[ -n $cpus && -n $mem ]] || die "could not parse 'slurmd -C' output: $cfg"

    local max_job_count=10000
    ((MAX_ARRAY_SIZE + 100 > max_job_count)) && max_job_count=$((MAX_ARRAY_SIZE + 100))
    # Job ids go on from the clock, so a restarted cluster does not hand out the ids of the
    # last one again (as a real cluster never does): logs and outputs named by job id, and
    # opened in append mode, are not reused by a later job.
    local first_job_id=$(($(date +%s) % 50000000 + 1000))

    local auth_info="socket=$MUNGE_SOCKET,cred_expire=10"
    {
        cat <<EOF
# Generated by scripts/slurm-dev.sh - throw-away development cluster.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=$auth_info
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
MinJobAge=600
MaxArraySize=$MAX_ARRAY_SIZE
FirstJobId=$first_job_id
MaxJobCount=$max_job_count
JobRequeue=1
ReturnToService=2
KillWait=5
InactiveLimit=0
SlurmdTimeout=300
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
PrologFlags=Alloc
Prolog=$ETC/prolog.sh
TaskProlog=$ETC/task_prolog.sh
Epilog=$ETC/epilog.sh
GresTypes=gpu
EOF
        if [[ $ACCOUNTING == dbd ]]; then
            cat <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# For slurmdbd connections the munge socket is taken from here, not AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
EOF
        else
            echo "AccountingStorageType=accounting_storage/none"
        fi
        local i gres=""
        ((GPUS_PER_NODE > 0)) && gres=" Gres=gpu:$GPU_TYPE:$GPUS_PER_NODE"
        echo "# Every node is declared with the machine's full CPUs/memory (oversubscribed when --nodes > 1)."
        for ((i = 1; i <= NODES; i++)); do
            echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((SLURMD_PORT0 + i)) CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem$gres State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    } >"$SLURM_CONF_FILE"

    # gres.conf: placeholder device files, one set per node.
    {
        echo "AutoDetect=off"
        if ((GPUS_PER_NODE > 0)); then
            local g
            for ((i = 1; i <= NODES; i++)); do
                mkdir -p "$DEVDIR/n$i"
                for ((g = 0; g < GPUS_PER_NODE; g++)); do
                    : >"$DEVDIR/n$i/nvidia$g"
                done
                echo "NodeName=n$i Name=gpu Type=$GPU_TYPE File=$DEVDIR/n$i/nvidia[0-$((GPUS_PER_NODE - 1))]"
            done
        fi
    } >"$ETC/gres.conf"

    # Per-job SLURM_TMPDIR like on Compute Canada nodes.
    cat >"$ETC/prolog.sh" <<EOF
#!/bin/sh
# Runs as root on each allocated node at job allocation (PrologFlags=Alloc).
d="$TMPROOT/\${SLURMD_NODENAME}/job_\${SLURM_JOB_ID}"
mkdir -p "\$d" && chown "\${SLURM_JOB_UID}" "\$d" && chmod 700 "\$d"
exit 0
EOF
    cat >"$ETC/task_prolog.sh" <<EOF
#!/bin/sh
# Runs as the job user before every task; stdout "export X=Y" lines are
# added to the task environment.
d="$TMPROOT/\${SLURMD_NODENAME}/job_\${SLURM_JOB_ID}"
[ -d "\$d" ] || mkdir -p "\$d" 2>/dev/null
echo "export SLURM_TMPDIR=\$d"
exit 0
EOF
    cat >"$ETC/epilog.sh" <<EOF
#!/bin/sh
# Runs as root on each node when the job ends.
d="$TMPROOT/\${SLURMD_NODENAME}/job_\${SLURM_JOB_ID}"
case "\$d" in "$TMPROOT"/*/job_?*) rm -rf "\$d" ;; esac
exit 0
EOF
    chmod 755 "$ETC/prolog.sh" "$ETC/task_prolog.sh" "$ETC/epilog.sh"

    if [[ $ACCOUNTING == dbd ]]; then
        DB_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
        (
            umask 077
            cat >"$ETC/slurmdbd.conf" <<EOF
# Generated by scripts/slurm-dev.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOGD/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
        )
        chown root:root "$ETC/slurmdbd.conf"
        chmod 600 "$ETC/slurmdbd.conf"
    fi

    cat >"$SETTINGS" <<EOF
NODES=$NODES
ACCOUNTING=$ACCOUNTING
MAX_ARRAY_SIZE=$MAX_ARRAY_SIZE
GPUS_PER_NODE=$GPUS_PER_NODE
PORT_BASE=$PORT_BASE
EOF
}

set_ports() {
    [[ -n $PORT_BASE ]] || PORT_BASE=$(default_port_base)
    CTLD_PORT=$PORT_BASE
    DBD_PORT=$((PORT_BASE + 1))
    DB_PORT=$((PORT_BASE + 2))
    SLURMD_PORT0=$((PORT_BASE + 2)) # node i listens on PORT_BASE+2+i
}

# ---------------------------------------------------------------- daemons
start_munge() {
    # A private munged: key, socket, pid and log under DIR.  munged insists
    # that every directory above its socket is world-searchable and its files
    # are owned by the user it runs as.  Run it as user munge when that user
    # can reach DIR; otherwise (e.g. pytest's 0700 /tmp/pytest-of-root) run it
    # as root with --force, which only relaxes those permission checks.
    local user=munge force=()
    mkdir -p "$MUNGE_DIR/key"
    chmod 755 "$MUNGE_DIR"
    chmod 700 "$MUNGE_DIR/key"
    if ! chown munge:munge "$MUNGE_DIR" "$MUNGE_DIR/key" 2>/dev/null ||
        ! runuser -u munge -- test -x "$MUNGE_DIR/key" 2>/dev/null; then
        user=root
        force=(--force)
        chown root:root "$MUNGE_DIR" "$MUNGE_DIR/key"
    fi
    dd if=/dev/urandom of="$MUNGE_DIR/key/munge.key" bs=1024 count=1 status=none
    chmod 400 "$MUNGE_DIR/key/munge.key"
    : >"$LOGD/munged.log"
    : >"$RUN/munged.pid"
    chown "$user:$user" "$MUNGE_DIR/key/munge.key" "$LOGD/munged.log" "$RUN/munged.pid"
    [[ $user == root ]] && log "note: user munge cannot reach $DIR; running munged as root --force"
    runuser -u "$user" -- munged "${force[@]}" \
        --key-file="$MUNGE_DIR/key/munge.key" \
        --socket="$MUNGE_SOCKET" \
        --pid-file="$RUN/munged.pid" \
        --log-file="$LOGD/munged.log" \
        --seed-file="$MUNGE_DIR/key/munge.seed" \
        </dev/null >>"$LOGD/munged.log" 2>&1 ||
        die "munged failed to start (as user $user)" "$LOGD/munged.log"
    wait_pidfile "$RUN/munged.pid" munged "$LOGD/munged.log"
    local end=$((SECONDS + WAIT_SECS))
    while ((SECONDS < end)) && [[ ! -S $MUNGE_SOCKET ]]; do sleep 0.1; done
    munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 ||
        die "munge self-test failed" "$LOGD/munged.log"
}

start_mariadb() {
    local out=$LOGD/mariadb-install-db.log
    mkdir -p "$DB_DIR"
    if ! mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root \
        --skip-test-db --auth-root-authentication-method=socket \
        --innodb-flush-method=nosync --innodb-doublewrite=0 --skip-log-bin \
        >"$out" 2>&1; then
        die "mariadb-install-db failed" "$out"
    fi
    setsid mariadbd --no-defaults --datadir="$DB_DIR" --socket="$DB_SOCKET" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --user=root --pid-file="$RUN/mariadbd.pid" \
        --log-error="$LOGD/mariadbd.log" --skip-log-bin \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        --innodb-flush-method=nosync \
        --max-connections=50 \
        </dev/null >>"$LOGD/mariadbd.log" 2>&1 &
    local end=$((SECONDS + WAIT_SECS))
    while ((SECONDS < end)); do
        if [[ -S $DB_SOCKET ]] && mariadb --no-defaults --socket="$DB_SOCKET" -uroot \
            -e 'SELECT 1' >/dev/null 2>&1; then
            break
        fi
        [[ -s $RUN/mariadbd.pid ]] && ! pid_of "$RUN/mariadbd.pid" mariadbd >/dev/null &&
            die "mariadbd exited" "$LOGD/mariadbd.log"
        sleep 0.1
    done
    wait_pidfile "$RUN/mariadbd.pid" mariadbd "$LOGD/mariadbd.log"
    mariadb --no-defaults --socket="$DB_SOCKET" -uroot >>"$LOGD/mariadbd.log" 2>&1 <<EOF ||
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
        die "could not create the accounting database" "$LOGD/mariadbd.log"
}

start_slurmdbd() {
    SLURM_CONF=$SLURM_CONF_FILE slurmdbd </dev/null >>"$LOGD/slurmdbd.log" 2>&1 ||
        die "slurmdbd failed to start" "$LOGD/slurmdbd.log"
    wait_pidfile "$RUN/slurmdbd.pid" slurmdbd "$LOGD/slurmdbd.log"
    local out ok=0 end=$((SECONDS + WAIT_SECS))
    while ((SECONDS < end)); do
        if out=$(SLURM_CONF=$SLURM_CONF_FILE timeout 10 sacctmgr -n -P list cluster format=Cluster 2>&1); then
            ok=1
            break
        fi
        [[ $out == *fatal* ]] && break
        pid_of "$RUN/slurmdbd.pid" slurmdbd >/dev/null || die "slurmdbd exited" "$LOGD/slurmdbd.log"
        sleep 0.2
    done
    ((ok)) || die "slurmdbd does not answer sacctmgr: $(tail -n 1 <<<"$out")" "$LOGD/slurmdbd.log"
    if ! grep -qx "$CLUSTER_NAME" <<<"$out"; then
        SLURM_CONF=$SLURM_CONF_FILE sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null 2>&1 ||
            die "sacctmgr add cluster $CLUSTER_NAME failed" "$LOGD/slurmdbd.log"
    fi
}

start_slurmctld() {
    SLURM_CONF=$SLURM_CONF_FILE slurmctld -c </dev/null >>"$LOGD/slurmctld.log" 2>&1 ||
        die "slurmctld failed to start" "$LOGD/slurmctld.log"
    wait_pidfile "$RUN/slurmctld.pid" slurmctld "$LOGD/slurmctld.log"
}

start_slurmd() {
    local n=$1
    mkdir -p "$SPOOL/$n" "$TMPROOT/$n"
    SLURM_CONF=$SLURM_CONF_FILE slurmd -N "$n" </dev/null >>"$LOGD/slurmd-$n.log" 2>&1 ||
        die "slurmd -N $n failed to start" "$LOGD/slurmd-$n.log"
    wait_pidfile "$RUN/slurmd-$n.pid" slurmd "$LOGD/slurmd-$n.log"
}

wait_nodes_idle() {
    local out bad end=$((SECONDS + WAIT_SECS))
    while ((SECONDS < end)); do
        out=$(SLURM_CONF=$SLURM_CONF_FILE timeout 10 sinfo -h -N -o '%N %T' 2>&1) || out=""
        if [[ -n $out ]]; then
            bad=$(awk '$2 != "idle"' <<<"$out")
            [[ -z $bad ]] && return 0
        fi
        sleep 0.2
    done
    local logs=("$LOGD/slurmctld.log") n
    for n in $(node_names); do logs+=("$LOGD/slurmd-$n.log"); done
    die "node(s) not idle after ${WAIT_SECS}s: $(tr '\n' ' ' <<<"${out:-no sinfo answer}")" "${logs[@]}"
}

wait_sacct() {
    local out end=$((SECONDS + WAIT_SECS))
    while ((SECONDS < end)); do
        out=$(SLURM_CONF=$SLURM_CONF_FILE timeout 10 sacct -n -X -a 2>&1) && return 0
        sleep 0.2
    done
    die "sacct does not answer after ${WAIT_SECS}s: $out" "$LOGD/slurmdbd.log" "$LOGD/slurmctld.log"
}

# ---------------------------------------------------------------- commands
parse_dir_only() {
    while (($#)); do
        case $1 in
        --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
        --dir=*) DIR=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $1" ;;
        esac
    done
}

cmd_up() {
    while (($#)); do
        case $1 in
        --nodes) NODES=${2:?}; shift 2 ;;
        --nodes=*) NODES=${1#*=}; shift ;;
        --accounting) ACCOUNTING=${2:?}; shift 2 ;;
        --accounting=*) ACCOUNTING=${1#*=}; shift ;;
        --max-array-size) MAX_ARRAY_SIZE=${2:?}; shift 2 ;;
        --max-array-size=*) MAX_ARRAY_SIZE=${1#*=}; shift ;;
        --gpus-per-node) GPUS_PER_NODE=${2:?}; shift 2 ;;
        --gpus-per-node=*) GPUS_PER_NODE=${1#*=}; shift ;;
        --port-base) PORT_BASE=${2:?}; shift 2 ;;
        --port-base=*) PORT_BASE=${1#*=}; shift ;;
        --dir) DIR=${2:?}; shift 2 ;;
        --dir=*) DIR=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option for up: $1" ;;
        esac
    done
    if ! [[ $NODES =~ ^[1-9][0-9]*$ ]] || ((NODES > 64)); then
        die "--nodes must be 1..64, got '$NODES'"
    fi
    [[ $ACCOUNTING == dbd || $ACCOUNTING == filetxt ]] || die "--accounting must be dbd or filetxt, got '$ACCOUNTING'"
    [[ $MAX_ARRAY_SIZE =~ ^[1-9][0-9]*$ ]] || die "--max-array-size must be a positive integer"
    [[ $GPUS_PER_NODE =~ ^[0-9]+$ ]] || die "--gpus-per-node must be a non-negative integer"
    [[ -z $PORT_BASE || ($PORT_BASE =~ ^[1-9][0-9]*$ && PORT_BASE -ge 1024 && PORT_BASE -le 65400) ]] ||
        die "--port-base must be 1024..65400"
    need_root
    set_paths
    ((${#MUNGE_SOCKET} < 100)) || die "DIR is too long for a unix socket path: $DIR"

    local want_nodes=$NODES want_acc=$ACCOUNTING want_max=$MAX_ARRAY_SIZE want_gpus=$GPUS_PER_NODE want_port=$PORT_BASE
    if load_settings && all_daemons_up; then
        if [[ $NODES == "$want_nodes" && $ACCOUNTING == "$want_acc" && $MAX_ARRAY_SIZE == "$want_max" &&
            $GPUS_PER_NODE == "$want_gpus" && (-z $want_port || $PORT_BASE == "$want_port") ]]; then
            log "cluster already up in $DIR (nodes=$NODES accounting=$ACCOUNTING); nothing to do"
            return 0
        fi
        log "cluster in $DIR is up with other settings; restarting it"
    fi
    if [[ -r $SETTINGS ]]; then
        # Stale (partly running) or different cluster: stop what is left of it.
        stop_cluster
    fi
    NODES=$want_nodes ACCOUNTING=$want_acc MAX_ARRAY_SIZE=$want_max GPUS_PER_NODE=$want_gpus PORT_BASE=$want_port

    local need=(slurmctld slurmd sinfo sbatch munged)
    [[ $ACCOUNTING == dbd ]] && need+=(slurmdbd mariadbd mariadb-install-db)
    local b
    for b in "${need[@]}"; do
        if ! command -v "$b" >/dev/null 2>&1; then
            cmd_install
            break
        fi
    done

    set_ports
    local p ports=("$CTLD_PORT")
    [[ $ACCOUNTING == dbd ]] && ports+=("$DBD_PORT" "$DB_PORT")
    for ((p = 1; p <= NODES; p++)); do ports+=($((SLURMD_PORT0 + p))); done
    for p in "${ports[@]}"; do
        port_in_use "$p" && die "port $p (127.0.0.1) is already in use; pick another --port-base or --dir"
    done

    local t0=$SECONDS
    # Fresh state every time: remove only what this script creates.
    rm -rf "$ETC" "$RUN" "$LOGD" "$STATE" "$SPOOL" "$MUNGE_DIR" "$DB_DIR" "$TMPROOT" "$DEVDIR" \
        "$DB_SOCKET" "$DIR/mysql.sock.lock" "$DIR/jobcomp.log" "$SETTINGS"
    mkdir -p "$DIR" "$ETC" "$RUN" "$LOGD" "$STATE" "$SPOOL" "$TMPROOT" "$DEVDIR"
    chmod 755 "$DIR" "$ETC" "$RUN" "$LOGD"
    chmod 1777 "$TMPROOT"
    write_configs

    start_munge
    if [[ $ACCOUNTING == dbd ]]; then
        start_mariadb
        start_slurmdbd
    fi
    start_slurmctld
    local n
    for n in $(node_names); do start_slurmd "$n"; done
    for n in $(node_names); do chmod 1777 "$TMPROOT/$n"; done
    wait_nodes_idle
    [[ $ACCOUNTING == dbd ]] && wait_sacct
    log "cluster up in $DIR: nodes=$NODES accounting=$ACCOUNTING gpus/node=$GPUS_PER_NODE ports=$PORT_BASE.. ($((SECONDS - t0)) s)"
    log "use it with: eval \"\$($0 env --dir $DIR)\""
}

# Cancel jobs (so no slurmstepd outlives its slurmd) and stop all daemons.
stop_cluster() {
    load_settings || true
    local ctld_pid
    if ctld_pid=$(pid_of "$RUN/slurmctld.pid" slurmctld) && [[ -n $ctld_pid ]]; then
        local jobs i
        mapfile -t jobs < <(SLURM_CONF=$SLURM_CONF_FILE timeout 10 squeue -h -o %A 2>/dev/null || true)
        if ((${#jobs[@]} > 0)); then
            log "cancelling ${#jobs[@]} job(s)"
            SLURM_CONF=$SLURM_CONF_FILE timeout 10 scancel "${jobs[@]}" >/dev/null 2>&1 || true
            for ((i = 0; i < 100; i++)); do
                [[ -z $(SLURM_CONF=$SLURM_CONF_FILE timeout 5 squeue -h -t R,CG,S -o %A 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    # Reverse start order; slurmd pid files for any node number.
    local f
    for f in "$RUN"/slurmd-*.pid; do
        [[ -e $f ]] && stop_pid "$f" slurmd
    done
    stop_pid "$RUN/slurmctld.pid" slurmctld
    stop_pid "$RUN/slurmdbd.pid" slurmdbd
    stop_pid "$RUN/mariadbd.pid" mariadbd
    stop_pid "$RUN/munged.pid" munged
}

cmd_down() {
    parse_dir_only "$@"
    need_root
    set_paths
    if [[ ! -d $RUN ]]; then
        log "no cluster in $DIR; nothing to stop"
        return 0
    fi
    local t0=$SECONDS
    stop_cluster
    log "cluster in $DIR is down ($((SECONDS - t0)) s)"
}

cmd_status() {
    parse_dir_only "$@"
    set_paths
    if ! load_settings; then
        echo "no cluster configured in $DIR"
        return 1
    fi
    local file name logf pid ok=0 label
    echo "cluster in $DIR: nodes=$NODES accounting=$ACCOUNTING gpus/node=$GPUS_PER_NODE max-array-size=$MAX_ARRAY_SIZE port-base=$PORT_BASE"
    while read -r file name logf; do
        label=$name
        [[ $name == slurmd ]] && label="slurmd ($(basename "$file" .pid | sed 's/^slurmd-//'))"
        if pid=$(pid_of "$file" "$name"); then
            printf '  %-16s running  pid %s\n' "$label" "$pid"
        else
            printf '  %-16s STOPPED  (log: %s)\n' "$label" "$logf"
            ok=1
        fi
    done < <(daemon_table)
    if pid_of "$RUN/slurmctld.pid" slurmctld >/dev/null; then
        SLURM_CONF=$SLURM_CONF_FILE timeout 10 sinfo || ok=1
    fi
    return $ok
}

cmd_env() {
    parse_dir_only "$@"
    set_paths
    [[ -r $SLURM_CONF_FILE ]] || die "no cluster configured in $DIR (run: $0 up --dir $DIR)"
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_FILE"
    printf 'export MCOMPILE_SLURM_DIR=%q\n' "$DIR"
}

main() {
    local cmd=${1:-}
    (($#)) && shift
    case $cmd in
    install) cmd_install ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
    esac
}

main "$@"
