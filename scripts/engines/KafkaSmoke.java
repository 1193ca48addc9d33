// Smoke test for the Kafka broker that scripts/services.sh starts, run as a single-file
// Java program against the fetched jars (no build):
//   java -cp "<kafka lib>/*" scripts/engines/KafkaSmoke.java 127.0.0.1:9092
// Creates a topic, produces one record, consumes it back in a consumer group, checks that
// producing to an unknown topic auto-creates it, deletes both topics.

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaSmoke {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
        String topic = "hissaback-smoke-" + UUID.randomUUID();
        String value = "hello " + System.nanoTime();
        long t0 = System.nanoTime();

        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();

            Properties p = new Properties();
            p.putAll(common);
            p.put("acks", "all");
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            RecordMetadata meta;
            String autoTopic = topic + "-auto";
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                meta = producer.send(new ProducerRecord<>(topic, "k", value)).get();
                // auto.create.topics.enable: producing to an unknown topic creates it
                producer.send(new ProducerRecord<>(autoTopic, "k", value)).get();
            }

            Properties c = new Properties();
            c.putAll(common);
            c.put("group.id", "hissaback-smoke");
            c.put("auto.offset.reset", "earliest");
            c.put("key.deserializer", StringDeserializer.class.getName());
            c.put("value.deserializer", StringDeserializer.class.getName());
            String got = null;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                consumer.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 60_000;
                while (got == null && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        got = r.value();
                    }
                }
                consumer.commitSync();
            }
            admin.deleteTopics(List.of(topic, autoTopic)).all().get();

            if (!value.equals(got)) {
                System.err.println("kafka smoke FAILED: produced '" + value + "', consumed '" + got + "'");
                System.exit(1);
            }
            System.out.printf("kafka smoke ok: created %s, produced to partition %d offset %d, consumed it in a group, auto-created %s-auto, deleted both (%.1f s)%n",
                    topic, meta.partition(), meta.offset(), topic, (System.nanoTime() - t0) / 1e9);
        }
    }
}
