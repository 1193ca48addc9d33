#!/usr/bin/env bash
# A throwaway single-node Kafka (KRaft) with TLS listeners, beside the shared one of
# scripts/services.sh (whose ports and data it leaves alone). topics/tests/kafka_tls.rs runs it.
#
#   scripts/engines/kafka-tls.sh DIR PLAINTEXT_PORT SSL_PORT SASL_SSL_PORT CONTROLLER_PORT
#
# In DIR (created if needed) it writes
#   ca.pem        the CA that signed the broker's certificate (IP 127.0.0.1, DNS localhost):
#                 what clients trust (ssl.ca.location);
#   other-ca.pem  a CA that signed nothing: clients trusting only it must fail;
#   broker.p12    the broker's keystore; server.properties; data/ (KRaft, formatted with the
#                 SCRAM-SHA-256 user $KAFKA_TLS_SCRAM_USER / $KAFKA_TLS_SCRAM_PASSWORD,
#                 default hb / hb-secret); logs/;
# then runs the broker with listeners PLAINTEXT (also inter-broker), SSL and SASL_SSL
# (SCRAM-SHA-256) on 127.0.0.1, prints `ready` on stdout once it has started, and stays in the
# foreground. TERM/INT stop the broker; so does the exit of the process that started this
# script (a test that dies leaves no broker behind).
#
# It uses the Kafka jars scripts/services.sh fetched (`scripts/services.sh up` fetches them
# once into ~/.cache/hissaback-services/lib/kafka-<version>; HISSABACK_SERVICES_HOME,
# HISSABACK_KAFKA_VERSION and HISSABACK_JAVA as there) and the openssl command.
set -euo pipefail

[ $# -eq 5 ] || { echo "usage: $0 DIR PLAINTEXT_PORT SSL_PORT SASL_SSL_PORT CONTROLLER_PORT" >&2; exit 2; }
DIR="$1" PLAIN_PORT="$2" SSL_PORT="$3" SASL_PORT="$4" CONTROLLER_PORT="$5"
BIND=127.0.0.1
HOME_DIR="${HISSABACK_SERVICES_HOME:-$HOME/.cache/hissaback-services}"
KAFKA_VERSION="${HISSABACK_KAFKA_VERSION:-4.3.1}"
KAFKA_LIB="$HOME_DIR/lib/kafka-$KAFKA_VERSION"
SCRAM_USER="${KAFKA_TLS_SCRAM_USER:-hb}"
SCRAM_PASSWORD="${KAFKA_TLS_SCRAM_PASSWORD:-hb-secret}"
STORE_PASSWORD=kafka-tls-test
PARENT=$PPID

die() { echo "[kafka-tls] ERROR: $*" >&2; exit 1; }

[ -f "$KAFKA_LIB/.complete" ] || die "no Kafka jars in $KAFKA_LIB: run 'scripts/services.sh up' once (it fetches them)"
JAVA="${HISSABACK_JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/java}}"
JAVA="${JAVA:-$(command -v java || true)}"
[ -x "$JAVA" ] || die "no java (Kafka $KAFKA_VERSION needs Java 17); set HISSABACK_JAVA"
command -v openssl >/dev/null || die "no openssl command"

mkdir -p "$DIR/data" "$DIR/logs"
cd "$DIR"

# --- certificates: a CA, the broker's key and certificate signed by it, and an unrelated CA
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj "/CN=hissaback test CA" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 \
  -subj "/CN=hissaback unrelated CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >broker.ext
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 2 \
  -extfile broker.ext 2>/dev/null
openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
  -out broker.p12 -passout "pass:$STORE_PASSWORD"

# --- configuration
cat >server.properties <<EOF
# Written by scripts/engines/kafka-tls.sh: single-node KRaft with TLS listeners, for tests only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$BIND:$CONTROLLER_PORT
listeners=PLAINTEXT://$BIND:$PLAIN_PORT,SSL://$BIND:$SSL_PORT,SASL_SSL://$BIND:$SASL_PORT,CONTROLLER://$BIND:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$BIND:$PLAIN_PORT,SSL://$BIND:$SSL_PORT,SASL_SSL://$BIND:$SASL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$DIR/broker.p12
ssl.keystore.password=$STORE_PASSWORD
ssl.key.password=$STORE_PASSWORD
ssl.client.auth=none
sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$DIR/data
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
cat >log4j2.xml <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="server" fileName="$DIR/logs/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
EOF

CLUSTER_ID="$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break')"
"$JAVA" -cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$DIR/log4j2.xml" \
  kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$DIR/server.properties" --ignore-formatted \
  --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" >logs/format.log 2>&1 ||
  { cat logs/format.log >&2; die "kafka storage format failed"; }

# --- run
"$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true -Dkafka.logs.dir="$DIR/logs" -Dlog4j2.configurationFile="$DIR/log4j2.xml" \
  -cp "$KAFKA_LIB/*" kafka.Kafka "$DIR/server.properties" >logs/stdout.log 2>&1 &
BROKER=$!
stop() {
  trap - TERM INT EXIT
  kill "$BROKER" 2>/dev/null || true
  # A graceful stop takes a few seconds; a test only needs the broker gone.
  for _ in $(seq 50); do kill -0 "$BROKER" 2>/dev/null || exit 0; sleep 0.1; done
  kill -9 "$BROKER" 2>/dev/null || true
  exit 0
}
trap stop TERM INT EXIT

ready=0
while kill -0 "$BROKER" 2>/dev/null; do
  kill -0 "$PARENT" 2>/dev/null || stop
  if [ "$ready" = 0 ] && grep -q "Kafka Server started" logs/server.log 2>/dev/null; then
    ready=1
    echo ready
  fi
  sleep 0.2
done
trap - TERM INT EXIT
echo "[kafka-tls] the broker exited; last lines of its logs:" >&2
tail -n 30 logs/stdout.log logs/server.log >&2 || true
exit 1
