#!/usr/bin/env bash
# Real Apache Kafka and Apache Cassandra on 127.0.0.1 for hissaback's integration tests and CI,
# without Docker (CI machines have none): the servers run as plain JVMs from jars that Maven
# fetches from Maven Central (the only place besides the language registries we can download
# from; apache.org tarballs are out of reach).
#
#   scripts/services.sh up [kafka|cassandra]...    fetch (first time), start in the background,
#                                                  wait until both answer; idempotent
#   scripts/services.sh status                     pids, ports answering, memory; exit 3 if not all up
#   scripts/services.sh down [--wipe]              SIGTERM, wait, SIGKILL; --wipe also deletes data
#   scripts/services.sh reset                      down --wipe
#   scripts/services.sh smoke                      Kafka topic/produce/consume; CQL counter + LWT
#
# Kafka:     org.apache.kafka:kafka_2.13 (KRaft, broker+controller in one JVM)
#            PLAINTEXT 127.0.0.1:9092, controller 127.0.0.1:9093
# Cassandra: org.apache.cassandra:cassandra-all (CassandraDaemon), CQL 127.0.0.1:9042,
#            storage port 127.0.0.1:7000, no JMX
#
# Everything it writes (maven repo, jars, config, data, logs, pid files) lives in
# ${HISSABACK_SERVICES_HOME:-$HOME/.cache/hissaback-services}; the repo stays clean. Needs Java 17
# (both servers run on it), Maven and python3 (readiness probes speak the wire protocols with
# the stdlib: scripts/engines/probe.py); as root it apt-installs whichever is missing.
#
# Overrides (env): HISSABACK_KAFKA_VERSION, HISSABACK_CASSANDRA_VERSION, HISSABACK_KAFKA_PORT,
# HISSABACK_KAFKA_CONTROLLER_PORT, HISSABACK_CQL_PORT, HISSABACK_CASSANDRA_STORAGE_PORT,
# HISSABACK_KAFKA_HEAP, HISSABACK_CASSANDRA_HEAP (-Xmx), HISSABACK_CASSANDRA_HEAP_MIN (-Xms),
# HISSABACK_SERVICES_TIMEOUT (seconds, default 240), HISSABACK_JAVA.
set -euo pipefail
export LC_NUMERIC=C  # EPOCHREALTIME with a '.' for the timing arithmetic

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENGINES="$SCRIPT_DIR/engines"
HOME_DIR="${HISSABACK_SERVICES_HOME:-$HOME/.cache/hissaback-services}"

KAFKA_VERSION="${HISSABACK_KAFKA_VERSION:-4.3.1}"
CASSANDRA_VERSION="${HISSABACK_CASSANDRA_VERSION:-5.0.9}"
BIND=127.0.0.1
KAFKA_PORT="${HISSABACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${HISSABACK_KAFKA_CONTROLLER_PORT:-9093}"
CQL_PORT="${HISSABACK_CQL_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${HISSABACK_CASSANDRA_STORAGE_PORT:-7000}"
KAFKA_HEAP="${HISSABACK_KAFKA_HEAP:-512m}"
CASSANDRA_HEAP="${HISSABACK_CASSANDRA_HEAP:-2g}"
# Cassandra mlockall()s its memory at start (it succeeds as root), so -Xms is resident at once:
# -Xms1g costs ~1.4 GiB RSS, -Xms256m ~0.75 GiB. The 2 GiB ceiling leaves room for the many
# keyspaces (one per test process, ~40 tables each) a test run creates.
CASSANDRA_HEAP_MIN="${HISSABACK_CASSANDRA_HEAP_MIN:-256m}"
TIMEOUT="${HISSABACK_SERVICES_TIMEOUT:-240}"

KAFKA_LIB="$HOME_DIR/lib/kafka-$KAFKA_VERSION"
CASSANDRA_LIB="$HOME_DIR/lib/cassandra-$CASSANDRA_VERSION"
KAFKA_DIR="$HOME_DIR/kafka"          # conf/ data/ logs/
CASSANDRA_DIR="$HOME_DIR/cassandra"  # conf/ data/ logs/ triggers/
RUN_DIR="$HOME_DIR/run"              # pid files

ALL_SERVICES=(kafka cassandra)
declare -A LAUNCHED=()  # service -> EPOCHREALTIME of its launch, for "ready after"
STARTED=()              # services this `up` launched: stopped again if it fails

# ---------------------------------------------------------------------------------------------
# helpers

say() { echo "[services] $*"; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

main_class() {
  case "$1" in
    kafka) echo kafka.Kafka ;;
    cassandra) echo org.apache.cassandra.service.CassandraDaemon ;;
  esac
}
addr() {
  case "$1" in
    kafka) echo "$BIND:$KAFKA_PORT" ;;
    cassandra) echo "$BIND:$CQL_PORT" ;;
  esac
}
log_files() {
  case "$1" in
    kafka) echo "$KAFKA_DIR/logs/stdout.log $KAFKA_DIR/logs/server.log" ;;
    cassandra) echo "$CASSANDRA_DIR/logs/stdout.log $CASSANDRA_DIR/logs/system.log" ;;
  esac
}

# Answers the real protocol: Kafka ApiVersions+Metadata, or CQL SELECT release_version.
probe() {
  case "$1" in
    kafka) python3 "$ENGINES/probe.py" kafka "$(addr kafka)" ;;
    cassandra) python3 "$ENGINES/probe.py" cql "$(addr cassandra)" ;;
  esac
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$BIND/$1" 2>/dev/null; }

# The pid from the pid file if that process is alive and still runs our main class.
live_pid() {
  local f="$RUN_DIR/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(main_class "$1")" || return 1
  echo "$pid"
}

rss() { awk '/^VmRSS/ { printf "%d MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

show_logs() {
  local f
  for f in $(log_files "$1"); do
    if [ -s "$f" ]; then
      echo "----- last 50 lines of $f -----" >&2
      tail -n 50 "$f" | cut -c1-400 >&2
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# tools: Java 17, Maven, python3

java_major() { "$1" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\)[."].*/\1/p'; }

find_java17() {
  local cand
  for cand in "${HISSABACK_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" \
    /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/*17*/bin/java; do
    if [ -n "$cand" ] && [ -x "$cand" ] && [ "$(java_major "$cand")" = 17 ]; then
      readlink -f "$cand"
      return 0
    fi
  done
  return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing $*; install it (Debian: apt-get install $*)"
  fi
  say "installing $* with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_tools() {
  command -v python3 >/dev/null || apt_install python3
  if ! JAVA="$(find_java17)"; then
    apt_install openjdk-17-jdk-headless
    JAVA="$(find_java17)" || die "no Java 17 found (Kafka 4 and Cassandra 5.0 both need it); set HISSABACK_JAVA"
  fi
  export JAVA_HOME="${JAVA%/bin/java}"  # Maven and the servers use the same JDK
  command -v mvn >/dev/null || apt_install maven
}

# ---------------------------------------------------------------------------------------------
# fetch: `mvn dependency:copy-dependencies` on scripts/engines/<name>-pom.xml into lib/<name>-<ver>

fetch() {
  local name="$1" version="$2" dest="$3" t0="$EPOCHREALTIME" tmp log
  if [ -f "$dest/.complete" ]; then
    say "fetch $name $version: cached in $dest ($(secs_since "$t0") s)"
    return 0
  fi
  tmp="$dest.tmp.$$"
  log="$HOME_DIR/logs/fetch-$name.log"
  mkdir -p "$HOME_DIR/logs"
  rm -rf "$tmp"
  say "fetch $name $version from Maven Central ..."
  if ! mvn -B -ntp -Dstyle.color=never -f "$ENGINES/$name-pom.xml" \
      -Dmaven.repo.local="$HOME_DIR/m2" -D"$name.version=$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
    tail -n 50 "$log" >&2
    rm -rf "$tmp"
    die "fetching $name $version failed (full log: $log)"
  fi
  rm -rf "$dest"
  mv "$tmp" "$dest"
  touch "$dest/.complete"
  say "fetch $name $version: $(find "$dest" -name '*.jar' | wc -l) jars, $(du -sh "$dest" | cut -f1) in $(secs_since "$t0") s"
}

# ---------------------------------------------------------------------------------------------
# Kafka: KRaft single node

kafka_configure() {
  mkdir -p "$KAFKA_DIR/conf" "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/conf/server.properties" <<EOF
# Written by scripts/services.sh: single-node KRaft (broker + controller), for tests only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$BIND:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$BIND:$KAFKA_PORT,CONTROLLER://$BIND:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$BIND:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$KAFKA_DIR/conf/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="$KAFKA_DIR/logs/server.log" filePattern="$KAFKA_DIR/logs/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="20MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
EOF
  # Formatting the metadata dir is mandatory in KRaft; done once (again after --wipe).
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id="$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break')"
    "$JAVA" -cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$KAFKA_DIR/conf/log4j2.xml" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/conf/server.properties" \
      --ignore-formatted >"$KAFKA_DIR/logs/format.log" 2>&1 ||
      { cat "$KAFKA_DIR/logs/format.log" >&2; die "kafka storage format failed"; }
    say "kafka: formatted $KAFKA_DIR/data (cluster id $cluster_id)"
  fi
}

kafka_cmd() {
  CMD=("$JAVA" -Xmx"$KAFKA_HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -Dlog4j2.configurationFile="$KAFKA_DIR/conf/log4j2.xml" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_DIR/conf/server.properties")
}

# ---------------------------------------------------------------------------------------------
# Cassandra: one node, seed of itself

# Cassandra 5.0's conf/jvm17-server.options (JPMS + G1 + netty); the tarball is not on Maven Central.
CASSANDRA_JVM17_OPTS=(
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
  -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

cassandra_configure() {
  local d="$CASSANDRA_DIR"
  mkdir -p "$d/conf" "$d/data" "$d/logs" "$d/triggers"
  cat >"$d/conf/cassandra.yaml" <<EOF
# Written by scripts/services.sh: a single test node. Unset keys keep Cassandra 5.0's defaults.
cluster_name: hissaback
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$BIND:$CASSANDRA_STORAGE_PORT"
listen_address: $BIND
rpc_address: $BIND
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CQL_PORT
start_native_transport: true
data_file_directories: ["$d/data/data"]
commitlog_directory: "$d/data/commitlog"
saved_caches_directory: "$d/data/saved_caches"
hints_directory: "$d/data/hints"
cdc_raw_directory: "$d/data/cdc_raw"
commitlog_sync: periodic
commitlog_sync_period: 10000ms
# A fresh node needs no compatibility with 4.x sstables/messaging.
storage_compatibility_mode: NONE
# Tests drop and truncate a lot: don't snapshot each time.
auto_snapshot: false
concurrent_compactors: 1
EOF
  cat >"$d/conf/logback.xml" <<EOF
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$d/logs/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$d/logs/system.log.%i</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="FILE"/></root>
</configuration>
EOF
}

cassandra_cmd() {
  local d="$CASSANDRA_DIR"
  CMD=("$JAVA" -Xms"$CASSANDRA_HEAP_MIN" -Xmx"$CASSANDRA_HEAP" "${CASSANDRA_JVM17_OPTS[@]}" \
    -XX:+ExitOnOutOfMemoryError -Djava.net.preferIPv4Stack=true \
    -Dcassandra.config="file://$d/conf/cassandra.yaml" \
    -Dcassandra-foreground=yes \
    -Dcassandra.storagedir="$d/data" -Dcassandra.logdir="$d/logs" \
    -Dcassandra.triggers_dir="$d/triggers" \
    -Dlogback.configurationFile="$d/conf/logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.load_ring_state=false \
    -Dcassandra.unsafesystem=true \
    -cp "$CASSANDRA_LIB/*" org.apache.cassandra.service.CassandraDaemon)
}

# ---------------------------------------------------------------------------------------------
# start / stop

# Start $1 detached (own session, stdin closed) so it outlives this script; the pid file is
# written by the process itself just before it execs the JVM.
launch() {
  local svc="$1" pidfile="$RUN_DIR/$1.pid" out i
  local -a CMD
  case "$svc" in
    kafka) out="$KAFKA_DIR/logs/stdout.log"; kafka_cmd ;;
    cassandra) out="$CASSANDRA_DIR/logs/stdout.log"; cassandra_cmd ;;
  esac
  rm -f "$pidfile"
  # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
  # 9>&-: the JVM must not inherit (and hold) this script's lock.
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "${CMD[@]}" >"$out" 2>&1 </dev/null 9>&- &
  for i in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || die "$svc: no pid file after launch"
  LAUNCHED[$svc]="$EPOCHREALTIME"
  STARTED+=("$svc")
  say "$svc: started pid $(cat "$pidfile") (log: ${out%/*})"
}

# Refuse to start if a port we need is taken by a process we did not start.
check_ports() {
  local svc="$1" p
  local -a ports
  case "$svc" in
    kafka) ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT") ;;
    cassandra) ports=("$CQL_PORT" "$CASSANDRA_STORAGE_PORT") ;;
  esac
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      die "$svc: port $BIND:$p is already in use by a process this script did not start (see: ss -ltnp 'sport = :$p')"
    fi
  done
}

stop() {
  # Stop the given services in parallel: SIGTERM, up to 60 s, then SIGKILL.
  local svc pid i
  local -a pids=() names=()
  for svc in "$@"; do
    if pid="$(live_pid "$svc")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$svc")
      say "$svc: SIGTERM sent to pid $pid"
    else
      say "$svc: not running"
    fi
    rm -f "$RUN_DIR/$svc.pid"
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  local t0="$EPOCHREALTIME"
  for i in $(seq 600); do
    local alive=0
    for pid in "${pids[@]}"; do [ -e "/proc/$pid" ] && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if [ -e "/proc/${pids[$i]}" ]; then
      kill -KILL "${pids[$i]}" 2>/dev/null || true
      say "${names[$i]}: did not stop within 60 s, SIGKILL sent"
    else
      say "${names[$i]}: stopped"
    fi
  done
  say "down took $(secs_since "$t0") s"
}

# ---------------------------------------------------------------------------------------------
# commands

# A failed `up` leaves nothing running that it started (CI must not keep stray JVMs).
stop_started_on_failure() {
  local rc=$?
  if [ "$rc" != 0 ] && [ "${#STARTED[@]}" -gt 0 ]; then
    say "up failed: stopping what this run started: ${STARTED[*]}" >&2
    stop "${STARTED[@]}" >&2
  fi
}

cmd_up() {
  local -a want=("$@") to_start=() waiting=()
  [ "${#want[@]}" -gt 0 ] || want=("${ALL_SERVICES[@]}")
  local svc t_up="$EPOCHREALTIME" pid
  ensure_tools
  mkdir -p "$RUN_DIR" "$HOME_DIR/lib"

  for svc in "${want[@]}"; do
    if pid="$(live_pid "$svc")"; then
      if probe "$svc" >/dev/null 2>&1; then
        say "$svc: already running (pid $pid) and answering on $(addr "$svc")"
      else
        say "$svc: running (pid $pid) but not answering yet; waiting for it"
        waiting+=("$svc")
      fi
    else
      rm -f "$RUN_DIR/$svc.pid"
      check_ports "$svc"
      to_start+=("$svc")
    fi
  done

  trap stop_started_on_failure EXIT
  for svc in "${to_start[@]+"${to_start[@]}"}"; do
    # Fetch, configure and launch one service before fetching the next, so Kafka boots while
    # Maven downloads Cassandra (one mvn at a time: the local repo is shared).
    case "$svc" in
      kafka)
        fetch kafka "$KAFKA_VERSION" "$KAFKA_LIB"
        kafka_configure
        ;;
      cassandra)
        fetch cassandra "$CASSANDRA_VERSION" "$CASSANDRA_LIB"
        cassandra_configure
        ;;
    esac
    launch "$svc"
    waiting+=("$svc")
  done
  [ "${#waiting[@]}" -gt 0 ] || { trap - EXIT; say "all up"; return 0; }

  local deadline=$((SECONDS + TIMEOUT)) t_wait="$EPOCHREALTIME" failed="" culprits=""
  for svc in "${waiting[@]}"; do [ -n "${LAUNCHED[$svc]:-}" ] || LAUNCHED[$svc]="$t_wait"; done
  local -a pending=("${waiting[@]}")
  while [ "${#pending[@]}" -gt 0 ]; do
    local -a still=()
    for svc in "${pending[@]}"; do
      local out
      if ! pid="$(live_pid "$svc")"; then
        failed="$svc exited during start-up"
        culprits="$svc"
        break 2
      elif out="$(probe "$svc" 2>/dev/null)"; then
        say "$svc: ready $(secs_since "${LAUNCHED[$svc]}") s after launch (pid $pid, RSS $(rss "$pid")): $out"
      else
        still+=("$svc")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    [ "${#pending[@]}" -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      failed="${pending[*]} not answering after ${TIMEOUT} s"
      culprits="${pending[*]}"
      break
    fi
    sleep 0.5
  done

  if [ -n "$failed" ]; then
    echo "[services] ERROR: $failed" >&2
    for svc in $culprits; do show_logs "$svc"; done
    exit 1  # the EXIT trap stops what this run started
  fi
  trap - EXIT
  say "up: all ready, $(secs_since "$t_up") s in total (Kafka $(addr kafka), CQL $(addr cassandra))"
}

cmd_status() {
  local svc pid rc=0 out
  for svc in "${ALL_SERVICES[@]}"; do
    if pid="$(live_pid "$svc")"; then
      if out="$(probe "$svc" 2>&1)"; then
        say "$svc: running, pid $pid, RSS $(rss "$pid"), $(addr "$svc") answering: $out"
      else
        say "$svc: running, pid $pid, RSS $(rss "$pid"), $(addr "$svc") NOT answering ($out)"
        rc=3
      fi
    elif out="$(probe "$svc" 2>/dev/null)"; then
      say "$svc: not started by this script, but $(addr "$svc") answers: $out"
    else
      say "$svc: stopped"
      rc=3
    fi
  done
  say "home: $HOME_DIR (logs in kafka/logs, cassandra/logs)"
  return "$rc"
}

cmd_down() {
  local wipe=0 arg
  local -a which=()
  for arg in "$@"; do
    case "$arg" in
      --wipe) wipe=1 ;;
      kafka | cassandra) which+=("$arg") ;;
      *) die "down: unknown argument '$arg'" ;;
    esac
  done
  [ "${#which[@]}" -gt 0 ] || which=("${ALL_SERVICES[@]}")
  mkdir -p "$RUN_DIR"
  stop "${which[@]}"
  if [ "$wipe" = 1 ]; then
    for arg in "${which[@]}"; do
      case "$arg" in
        kafka) rm -rf "$KAFKA_DIR/data" ;;
        cassandra) rm -rf "$CASSANDRA_DIR/data" ;;
      esac
      say "$arg: data wiped"
    done
  fi
}

cmd_smoke() {
  ensure_tools
  [ -f "$KAFKA_LIB/.complete" ] || die "no Kafka jars in $KAFKA_LIB yet: run '$0 up' first"
  local t0="$EPOCHREALTIME"
  python3 "$ENGINES/probe.py" cql-smoke "$(addr cassandra)"
  say "cql smoke took $(secs_since "$t0") s"
  t0="$EPOCHREALTIME"
  "$JAVA" -cp "$KAFKA_LIB/*" "$ENGINES/KafkaSmoke.java" "$(addr kafka)"
  say "kafka smoke took $(secs_since "$t0") s (includes compiling KafkaSmoke.java)"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# One up/down at a time per home dir (two `up`s racing would start two JVMs on one port).
lock() {
  mkdir -p "$HOME_DIR"
  exec 9>"$HOME_DIR/.lock"
  flock -w 300 9 || die "another services.sh up/down is still running (lock: $HOME_DIR/.lock)"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in up | down | reset) lock ;; esac
case "$cmd" in
  up)
    for arg in "$@"; do
      case "$arg" in kafka | cassandra) ;; *) die "up: unknown service '$arg'" ;; esac
    done
    cmd_up "$@"
    ;;
  status) cmd_status ;;
  down) cmd_down "$@" ;;
  reset) cmd_down --wipe "$@" ;;
  smoke) cmd_smoke ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
