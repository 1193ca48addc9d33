//! The Kafka bus over TLS and SASL/SCRAM against a real broker: a second, throwaway Kafka
//! (`scripts/engines/kafka-tls.sh`, the jars `scripts/services.sh up` fetched) on free ports,
//! with a generated CA, so the shared broker on 9092 is left alone. One broker for the whole
//! file; it is stopped at the end (and by the script itself should this process die).

use hissaback_topics::bus::kafka::{KafkaBus, KafkaSecurity};
use hissaback_topics::bus::{EventBus, Subscription};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The broker's process group (the script and its JVM): stopped on drop.
struct Broker {
    child: Child,
    dir: tempfile::TempDir,
    plaintext: u16,
    ssl: u16,
    sasl_ssl: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn logs(&self) -> String {
        ["logs/stdout.log", "logs/server.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!("--- {f} (last 30 lines) ---\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/engines/kafka-tls.sh")
}

/// Starts the broker and waits (up to 90 s) for it to say `ready`.
fn start_broker() -> Broker {
    let dir = tempfile::Builder::new().prefix("hissaback-kafka-tls-").tempdir().unwrap();
    let [plaintext, ssl, sasl_ssl, controller] = free_ports::<4>();
    let mut child = Command::new("bash")
        .arg(script())
        .arg(dir.path())
        .args([plaintext, ssl, sasl_ssl, controller].map(|p| p.to_string()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("running scripts/engines/kafka-tls.sh");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    let broker = Broker { child, dir, plaintext, ssl, sasl_ssl };
    if rx.recv_timeout(Duration::from_secs(90)).is_err() {
        panic!("the TLS Kafka broker did not start (scripts/engines/kafka-tls.sh; `scripts/services.sh up` fetches the Kafka jars)\n{}", broker.logs());
    }
    broker
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Quick failures: a message undelivered after 4 s fails (the bus's default is 30 s).
fn quick(mut security: KafkaSecurity) -> KafkaSecurity {
    security.client.insert("message.timeout.ms".into(), "4000".into());
    security.client.insert("socket.connection.setup.timeout.ms".into(), "3000".into());
    security
}

async fn round_trip(bus: &KafkaBus, what: &str) {
    let topic = unique("tls");
    bus.create_topics(std::slice::from_ref(&topic), 1, 1).await.unwrap_or_else(|e| panic!("{what}: creating {topic}: {e}"));
    for i in 0..3 {
        bus.publish(&topic, "k", format!("{what} {i}").into_bytes()).await.unwrap_or_else(|e| panic!("{what}: publish: {e}"));
    }
    let mut sub: Box<dyn Subscription> = bus.subscribe(&topic, &unique("g")).await.unwrap();
    for i in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: message {i} not received"))
            .unwrap();
        assert_eq!(d.payload, format!("{what} {i}").into_bytes());
        sub.commit(&d).await.unwrap();
    }
}

/// A publish that must fail: an error (or no answer) within 10 s, never a success.
async fn publish_fails(bus: &KafkaBus, what: &str) {
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), bus.publish(&unique("refused"), "k", b"x".to_vec())).await {
        Ok(Ok(())) => panic!("{what}: the publish succeeded"),
        Ok(Err(e)) => eprintln!("{what}: refused after {:?}: {e}", started.elapsed()),
        Err(_) => eprintln!("{what}: no delivery within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_works_over_tls_and_scram_and_refuses_the_wrong_ca_plaintext_and_wrong_credentials() {
    let started = Instant::now();
    let broker = start_broker();
    eprintln!("TLS broker ready after {:?}", started.elapsed());
    let ssl = format!("127.0.0.1:{}", broker.ssl);
    let sasl_ssl = format!("127.0.0.1:{}", broker.sasl_ssl);
    let tls = KafkaSecurity { security_protocol: Some("ssl".into()), ssl_ca_location: Some(broker.file("ca.pem")), ..Default::default() };

    // TLS with the broker's CA, the broker's name (its IP) verified: messages go through.
    let bus = KafkaBus::with_security(&ssl, "tls.", tls.clone()).unwrap();
    bus.ping().await.unwrap_or_else(|e| panic!("ping over TLS: {e}\n{}", broker.logs()));
    round_trip(&bus, "ssl").await;

    // SASL_SSL with SCRAM-SHA-256 and the right password, the CA given as a `client` property.
    let scram = KafkaSecurity {
        security_protocol: Some("sasl_ssl".into()),
        sasl_mechanism: Some("SCRAM-SHA-256".into()),
        sasl_username: Some("hb".into()),
        sasl_password: Some("hb-secret".into()),
        client: BTreeMap::from([("ssl.ca.location".to_string(), broker.file("ca.pem"))]),
        ..Default::default()
    };
    round_trip(&KafkaBus::with_security(&sasl_ssl, "scram.", scram.clone()).unwrap(), "sasl_ssl").await;

    // A client trusting another CA, a plaintext client on the TLS port, a wrong password, a
    // TLS client on the plaintext port: all fail.
    let other_ca = KafkaSecurity { ssl_ca_location: Some(broker.file("other-ca.pem")), ..tls.clone() };
    publish_fails(&KafkaBus::with_security(&ssl, "tls.", quick(other_ca)).unwrap(), "another CA").await;
    publish_fails(&KafkaBus::with_security(&ssl, "tls.", quick(KafkaSecurity::default())).unwrap(), "plaintext on the TLS port").await;
    let wrong = KafkaSecurity { sasl_password: Some("not-the-password".into()), ..scram.clone() };
    publish_fails(&KafkaBus::with_security(&sasl_ssl, "scram.", quick(wrong)).unwrap(), "a wrong SCRAM password").await;
    let plain_port = format!("127.0.0.1:{}", broker.plaintext);
    publish_fails(&KafkaBus::with_security(&plain_port, "tls.", quick(tls)).unwrap(), "TLS on the plaintext port").await;
    eprintln!("done after {:?}", started.elapsed());
}
