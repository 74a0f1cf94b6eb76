#!/bin/sh
# Creates the FMLC topics before any worker starts (the compose service `kafka-init`).
# The broker runs with auto-creation off, so every topic a worker writes to must be made here:
# the input, output and dead-letter topics, and every alert topic that the worker's alert rules
# file names (fmlc.alerts.<area>). Idempotent: existing topics are left as they are.
set -eu

BOOTSTRAP_SERVERS=${BOOTSTRAP_SERVERS:-kafka:9092}
FMLC_PARTITIONS=${FMLC_PARTITIONS:-6}
# Alerts are few; one partition keeps each area's alerts in the order they fired.
ALERT_PARTITIONS=${ALERT_PARTITIONS:-1}
ALERT_RULES=${ALERT_RULES:-/etc/fmlc/alert_rules.yaml}
KAFKA_TOPICS=${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}
# One broker in docker compose; a production cluster (the Kubernetes Job) sets 3.
FMLC_REPLICATION=${FMLC_REPLICATION:-1}
# Client properties (security.protocol, sasl.*) for a secured cluster; used when the file exists.
# The Kubernetes Job mounts it from the worker's Secret, so no credential is on the command line.
COMMAND_CONFIG=${COMMAND_CONFIG:-/etc/fmlc/kafka/client.properties}

kafka_topics() {
    if [ -r "$COMMAND_CONFIG" ]; then
        "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP_SERVERS" --command-config "$COMMAND_CONFIG" "$@"
    else
        "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP_SERVERS" "$@"
    fi
}

create() {
    kafka_topics --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor "$FMLC_REPLICATION"
}

for topic in fmlc.complaints fmlc.labels fmlc.dead-letter; do
    create "$topic" "$FMLC_PARTITIONS"
done

if [ ! -r "$ALERT_RULES" ]; then
    echo "create-topics: alert rules file $ALERT_RULES is missing" >&2
    exit 1
fi
# The `topic:` value of each rule (block YAML or one-key-per-line JSON; comments are skipped).
# The image has no YAML parser; tests/test_deploy.py checks that this finds exactly the topics
# the worker's own loader (worker.alerts.AlertRules) reads from the file.
alert_topics=$(sed -n -E \
    "s/^[[:space:]]*(-[[:space:]]+)?\"?topic\"?[[:space:]]*:[[:space:]]*[\"']?([A-Za-z0-9._-]+)[\"']?[[:space:]]*,?[[:space:]]*(#.*)?\$/\\2/p" \
    "$ALERT_RULES" | sort -u)
if [ -z "$alert_topics" ]; then
    echo "create-topics: no alert topic named in $ALERT_RULES" >&2
    exit 1
fi
for topic in $alert_topics; do
    create "$topic" "$ALERT_PARTITIONS"
done

kafka_topics --describe
