#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and for machines
# without Docker. Needs only java (>= 11; 17 recommended) and, for the first fetch, mvn.
#
#   kafka.sh fetch    download the official Kafka jars from Maven Central into the cache (idempotent)
#   kafka.sh start    format a fresh KRaft log dir and run the broker in the background on 127.0.0.1
#   kafka.sh stop     stop it (SIGTERM, then SIGKILL after a bound) and delete its data
#   kafka.sh status   say whether it runs (exit 0 if it does, 3 if not)
#
# Environment (all optional):
#   STREAM_RCA_KAFKA_HOME             cache dir for the jars          (default: deploy/kafka/.cache)
#   STREAM_RCA_KAFKA_PORT             client port (PLAINTEXT)         (default: 9092)
#   STREAM_RCA_KAFKA_CONTROLLER_PORT  KRaft controller port           (default: client port + 1)
#   STREAM_RCA_KAFKA_STATE_DIR        config, data, logs and pid file (default: <cache>/run/<port>)
#   STREAM_RCA_KAFKA_START_TIMEOUT    seconds to wait for the broker  (default: 60)
#   STREAM_RCA_KAFKA_STOP_TIMEOUT     seconds before SIGKILL on stop  (default: 20)
#   STREAM_RCA_KAFKA_PARTITIONS       num.partitions of new topics    (default: 4)
#   STREAM_RCA_KAFKA_HEAP_OPTS        JVM heap                        (default: -Xms128m -Xmx512m)
#   STREAM_RCA_KAFKA_JVM_OPTS         extra JVM options               (default: none)
#   STREAM_RCA_KAFKA_OWNER_PID        stop the broker when this process exits (used by the tests)
set -euo pipefail

# The one place the Kafka version is pinned (Scala 2.13 build, from Maven Central).
KAFKA_VERSION="3.9.2"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_HOME="${STREAM_RCA_KAFKA_HOME:-$SCRIPT_DIR/.cache}"
LIB_DIR="$KAFKA_HOME/kafka-$KAFKA_VERSION/libs"
PORT="${STREAM_RCA_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${STREAM_RCA_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
STATE_DIR="${STREAM_RCA_KAFKA_STATE_DIR:-$KAFKA_HOME/run/$PORT}"
START_TIMEOUT="${STREAM_RCA_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${STREAM_RCA_KAFKA_STOP_TIMEOUT:-20}"
PARTITIONS="${STREAM_RCA_KAFKA_PARTITIONS:-4}"
HEAP_OPTS="${STREAM_RCA_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
JVM_OPTS="${STREAM_RCA_KAFKA_JVM_OPTS:-}"
OWNER_PID="${STREAM_RCA_KAFKA_OWNER_PID:-}"
PID_FILE="$STATE_DIR/kafka.pid"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
BOOTSTRAP="127.0.0.1:$PORT"

die() {
    echo "kafka.sh: error: $*" >&2
    exit 1
}

info() {
    echo "kafka.sh: $*" >&2
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH. $2"
}

is_fetched() {
    [[ -f "$LIB_DIR/.complete" ]]
}

cmd_fetch() {
    if is_fetched; then
        info "Kafka $KAFKA_VERSION already fetched in $LIB_DIR"
        return 0
    fi
    need mvn "Install Apache Maven (e.g. 'apt-get install maven') to fetch the Kafka jars, or point \
STREAM_RCA_KAFKA_HOME at a cache that already holds kafka-$KAFKA_VERSION/libs."
    need java "Install a Java runtime >= 11 (e.g. 'apt-get install openjdk-17-jre-headless')."
    info "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR (first time: ~1 min)"
    mkdir -p "$KAFKA_HOME/kafka-$KAFKA_VERSION"
    local tmp="$LIB_DIR.tmp.$$"
    rm -rf "$tmp"
    local log="$KAFKA_HOME/kafka-$KAFKA_VERSION/fetch.log"
    if ! mvn -B -ntp -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" \
        -Dkafka.version="$KAFKA_VERSION" -Dkafka.lib="$tmp" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime >"$log" 2>&1; then
        grep -E 'ERROR|WARN' "$log" | tail -n 20 >&2 || true
        rm -rf "$tmp"
        die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central \
(network, proxy or ~/.m2/settings.xml mirror?); full output in $log"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
    touch "$tmp/.complete"
    # Publish in one rename; a concurrent fetch that finished first is just as good.
    if is_fetched; then
        rm -rf "$tmp"
    else
        rm -rf "$LIB_DIR"
        mv "$tmp" "$LIB_DIR"
    fi
    info "fetched $(find "$LIB_DIR" -name '*.jar' | wc -l) jars into $LIB_DIR"
}

check_java() {
    need java "Install a Java runtime >= 11 (e.g. 'apt-get install openjdk-17-jre-headless')."
    local version major
    version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
    major="${version%%.*}"
    if [[ "$major" == "1" ]]; then
        major="$(echo "$version" | cut -d. -f2)"
    fi
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major < 11)); then
        die "Kafka $KAFKA_VERSION needs Java >= 11, found Java $version"
    fi
}

# Prints the pid of our running broker, or nothing. A pid file whose process is gone, or was reused
# by another program, does not count.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $STATE_DIR/server.properties" || return 0
    else
        kill -0 "$pid" 2>/dev/null || return 0
    fi
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

new_cluster_id() {
    # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

write_config() {
    cat >"$STATE_DIR/server.properties" <<EOF
# Generated by deploy/kafka/kafka.sh: single-node KRaft broker for stream-rca. Do not edit.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR
auto.create.topics.enable=true
num.partitions=$PARTITIONS
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
# Small machines: few threads, small segments, keep little.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
log.segment.bytes=67108864
log.cleaner.dedupe.buffer.size=16777216
EOF
    cat >"$STATE_DIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_DIR/server.log
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
}

# The java command line shared by the storage tool and the broker.
java_cmd() {
    local -a heap extra
    read -r -a heap <<<"$HEAP_OPTS"
    read -r -a extra <<<"$JVM_OPTS"
    JAVA_CMD=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true "-Dlog4j.configuration=file:$STATE_DIR/log4j.properties"
        "-Dkafka.logs.dir=$LOG_DIR" ${extra[@]+"${extra[@]}"} -cp "$LIB_DIR/*")
}

cmd_start() {
    check_java
    is_fetched || cmd_fetch
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        info "already running (pid $pid)"
        echo "$BOOTSTRAP"
        return 0
    fi
    port_open "$PORT" && die "port $PORT on 127.0.0.1 is already in use; set STREAM_RCA_KAFKA_PORT"
    port_open "$CONTROLLER_PORT" &&
        die "controller port $CONTROLLER_PORT is already in use; set STREAM_RCA_KAFKA_CONTROLLER_PORT"

    # Always a fresh, empty cluster: this broker is for tests and local runs, not for keeping data.
    mkdir -p "$STATE_DIR"
    rm -rf "$DATA_DIR" "$LOG_DIR" "$PID_FILE"
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    write_config
    java_cmd
    if ! "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$(new_cluster_id)" \
        -c "$STATE_DIR/server.properties" >"$LOG_DIR/format.log" 2>&1; then
        cat "$LOG_DIR/format.log" >&2
        die "formatting the KRaft storage in $DATA_DIR failed"
    fi

    # The launcher writes its own pid, then becomes the JVM (exec), so the pid file names the broker.
    # shellcheck disable=SC2016  # expanded by the inner shell
    nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        "${JAVA_CMD[@]}" kafka.Kafka "$STATE_DIR/server.properties" \
        </dev/null >"$LOG_DIR/stdout.log" 2>&1 &
    local launcher=$!

    local deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! kill -0 "$launcher" 2>/dev/null; then
            tail -n 30 "$LOG_DIR/server.log" "$LOG_DIR/stdout.log" >&2 2>/dev/null || true
            rm -f "$PID_FILE"
            die "the broker exited during start-up; logs in $LOG_DIR"
        fi
        if port_open "$PORT" && grep -q "Kafka Server started" "$LOG_DIR/server.log" 2>/dev/null; then
            break
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOG_DIR/server.log" >&2 2>/dev/null || true
            kill -KILL "$launcher" 2>/dev/null || true
            rm -f "$PID_FILE"
            die "the broker did not start within ${START_TIMEOUT}s; logs in $LOG_DIR"
        fi
        sleep 0.2
    done
    local broker_pid
    broker_pid="$(cat "$PID_FILE")"
    if [[ -n "$OWNER_PID" ]]; then
        # Watchdog: the broker must not outlive the process that asked for it (a killed test run).
        # shellcheck disable=SC2016  # expanded by the inner shell
        nohup bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 2; done
            kill -TERM "$2" 2>/dev/null || exit 0
            for _ in $(seq 1 "$3"); do kill -0 "$2" 2>/dev/null || exit 0; sleep 1; done
            kill -KILL "$2" 2>/dev/null' _ "$OWNER_PID" "$broker_pid" "$STOP_TIMEOUT" \
            </dev/null >/dev/null 2>&1 &
    fi
    info "Kafka $KAFKA_VERSION running (pid $broker_pid), logs in $LOG_DIR"
    echo "$BOOTSTRAP"
}

cmd_stop() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        info "not running"
    else
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            info "no exit within ${STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do
                sleep 0.1
            done
        fi
        info "stopped (pid $pid)"
    fi
    # Data is throw-away; logs stay for post-mortems until the next start replaces them.
    rm -rf "$PID_FILE" "$DATA_DIR"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        echo "running (pid $pid) at $BOOTSTRAP, Kafka $KAFKA_VERSION, state in $STATE_DIR"
        return 0
    fi
    echo "not running (state dir $STATE_DIR)"
    return 3
}

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

case "${1:-}" in
fetch) cmd_fetch ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
version) echo "$KAFKA_VERSION" ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
