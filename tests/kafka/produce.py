"""Produces loghub lines into a Kafka topic with confluent-kafka (an independent
client, not the one sediment uses), for tests/kafka_*.rs and scripts/bench-kafka.

usage: produce.py BOOTSTRAP TOPIC PARTITIONS COUNT FIRST_SEQ HOURS BASE_HOUR_S LOGHUB_DIR REPORT

Creates TOPIC with PARTITIONS partitions if it does not exist. Record `seq`
(FIRST_SEQ.. FIRST_SEQ+COUNT-1) is loghub line seq // 10 of system seq % 10, in
partition seq % PARTITIONS, with the Kafka timestamp BASE_HOUR_S + (seq % HOURS)
hours + (seq % 3600) seconds, and a header `seq`. REPORT gets one line per
delivered record: `seq partition offset`. Exits non-zero if any delivery failed.
"""
import os
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

SYSTEMS = ["Android", "Apache", "HDFS", "Hadoop", "HealthApp", "Linux", "OpenSSH",
           "OpenStack", "Spark", "Zookeeper"]


def main():
    bootstrap, topic, partitions, count, first, hours, base, loghub, report = sys.argv[1:]
    partitions, count, first, hours, base = int(partitions), int(count), int(first), int(hours), int(base)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            f.result()
    lines = []
    for s in SYSTEMS:
        with open(os.path.join(loghub, s + "_2k.log"), encoding="utf-8", errors="replace") as f:
            lines.append([l.rstrip("\n") for l in f])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 2000, "queue.buffering.max.messages": 200000,
                         "compression.type": "none", "acks": "all", "enable.idempotence": False})
    failed = []
    out = open(report, "w")

    def delivered(seq):
        def report(err, msg):
            if err is not None:
                failed.append(str(err))
            else:
                out.write("%d %d %d\n" % (seq, msg.partition(), msg.offset()))
        return report

    for seq in range(first, first + count):
        system = lines[seq % 10]
        value = system[(seq // 10) % len(system)]
        ts_ms = (base + (seq % hours) * 3600 + seq % 3600) * 1000
        while True:
            try:
                producer.produce(topic, value.encode(), partition=seq % partitions,
                                 timestamp=ts_ms, headers=[("seq", str(seq).encode())],
                                 on_delivery=delivered(seq))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    out.close()
    if failed or left:
        sys.exit("%d deliveries failed (%s), %d undelivered" % (len(failed), failed[:3], left))


if __name__ == "__main__":
    main()
