// Package kafkatest gives tests a Kafka cluster to talk to: a real Apache
// Kafka broker when KAFKASEND_TEST_BROKERS names one (hack/kafka.sh start
// prints its address), otherwise an in-process kfake cluster on 127.0.0.1.
//
// Importing the package sets metrics.UseNilMetrics, so sarama's go-metrics
// registry starts no goroutines that a leak check would report.
package kafkatest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	// EnvBrokers holds a comma-separated list of real broker addresses
	// (host:port). When it is set, tests use that cluster instead of kfake.
	EnvBrokers = "KAFKASEND_TEST_BROKERS"
	// EnvRequireReal, set to "1", turns RequireReal's skip into a failure, so
	// that a CI job meant to run against Apache Kafka cannot pass silently.
	EnvRequireReal = "KAFKASEND_REQUIRE_REAL_KAFKA"
	// EnvVersion overrides the protocol version of SaramaConfig (for example
	// "2.1.0" to check the oldest version the project supports).
	EnvVersion = "KAFKASEND_TEST_KAFKA_VERSION"

	// KindKafka is what Kind reports when tests use a real broker.
	KindKafka = "kafka"
	// KindFake is what Kind reports when tests use an in-process kfake cluster.
	KindFake = "kfake"
)

// DefaultVersion is the protocol version SaramaConfig uses unless EnvVersion
// overrides it. The smoke test passes with it on kfake and on Apache Kafka
// 4.3.1 (as it does with 2.1.0, 3.9.0 and 4.3.1); sarama lowers each request
// to the broker's advertised maximum, so it also suits 3.x brokers.
var DefaultVersion = sarama.V4_0_0_0

// topicTimeout bounds how long CreateTopic waits for a new topic to have a
// leader for every partition.
const topicTimeout = 30 * time.Second

// version is DefaultVersion or the parsed EnvVersion; versionErr reports a
// malformed EnvVersion, which Brokers turns into a test failure.
var version, versionErr = parseVersion(os.Getenv(EnvVersion))

func init() {
	metrics.UseNilMetrics = true
}

func parseVersion(s string) (sarama.KafkaVersion, error) {
	if s == "" {
		return DefaultVersion, nil
	}
	v, err := sarama.ParseKafkaVersion(s)
	if err != nil {
		return DefaultVersion, fmt.Errorf("parsing %s=%q: %w", EnvVersion, s, err)
	}
	return v, nil
}

// RealBrokers returns the addresses in EnvBrokers, or nil when it is unset.
func RealBrokers() []string {
	var addrs []string
	for a := range strings.SplitSeq(os.Getenv(EnvBrokers), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// Kind reports which cluster Brokers hands out: KindKafka or KindFake.
func Kind() string {
	if len(RealBrokers()) > 0 {
		return KindKafka
	}
	return KindFake
}

// RequireReal skips the test unless a real broker is configured; with
// EnvRequireReal=1 it fails the test instead.
func RequireReal(t testing.TB) {
	t.Helper()
	if Kind() == KindKafka {
		return
	}
	msg := fmt.Sprintf("needs Apache Kafka: set %s (for example %s=$(hack/kafka.sh start))", EnvBrokers, EnvBrokers)
	if os.Getenv(EnvRequireReal) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, EnvRequireReal)
	}
	t.Skip(msg)
}

// Brokers returns bootstrap addresses of a cluster for t: the real brokers of
// EnvBrokers when set, otherwise a new single-broker kfake cluster that is
// closed when t ends.
func Brokers(t testing.TB) []string {
	t.Helper()
	if versionErr != nil {
		t.Fatal(versionErr)
	}
	if addrs := RealBrokers(); len(addrs) > 0 {
		return addrs
	}
	return Fake(t).ListenAddrs()
}

// Fake starts an in-process kfake cluster on 127.0.0.1, with one broker
// unless opts say otherwise, and closes it when t ends. Use it directly for
// tests that need kfake's fault injection (Cluster.ControlKey and friends).
func Fake(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// SaramaConfig returns a sarama configuration for tests: DefaultVersion (or
// EnvVersion), successes and errors returned, consumers starting at the
// oldest offset, and timeouts that suit a busy test machine.
func SaramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "kafkasend-test"
	cfg.Version = version
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Admin.Timeout = 20 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Short fetch waits let a consumer notice cancellation (and tests end) sooner.
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	return cfg
}

// Admin returns a cluster admin for brokers, closed when t ends.
func Admin(t testing.TB, brokers []string) sarama.ClusterAdmin {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, SaramaConfig())
	if err != nil {
		t.Fatalf("connecting cluster admin to %v: %v", brokers, err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return admin
}

// CreateTopic creates a topic with the given number of partitions (and
// replication factor 1) under a name unique to t, waits until every
// partition has a leader, and deletes the topic when t ends.
func CreateTopic(t testing.TB, brokers []string, partitions int) string {
	t.Helper()
	return CreateTopicWith(t, brokers, partitions, nil)
}

// CreateTopicWith is CreateTopic with topic-level configuration entries
// (for example "max.message.bytes").
func CreateTopicWith(t testing.TB, brokers []string, partitions int, configs map[string]string) string {
	t.Helper()
	if partitions < 1 {
		t.Fatalf("CreateTopic: partitions must be at least 1, got %d", partitions)
	}
	topic := TopicName(t)
	detail := &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}
	if len(configs) > 0 {
		detail.ConfigEntries = make(map[string]*string, len(configs))
		for k, v := range configs {
			detail.ConfigEntries[k] = &v
		}
	}
	admin, err := sarama.NewClusterAdmin(brokers, SaramaConfig())
	if err != nil {
		t.Fatalf("connecting cluster admin to %v: %v", brokers, err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, detail, false); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	t.Cleanup(func() { deleteTopic(t, brokers, topic) })
	if err := waitForLeaders(brokers, topic, partitions); err != nil {
		t.Fatalf("waiting for topic %s: %v", topic, err)
	}
	return topic
}

func deleteTopic(t testing.TB, brokers []string, topic string) {
	admin, err := sarama.NewClusterAdmin(brokers, SaramaConfig())
	if err != nil {
		t.Logf("deleting topic %s: connecting: %v", topic, err)
		return
	}
	defer admin.Close()
	if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Logf("deleting topic %s: %v", topic, err)
	}
}

// waitForLeaders polls metadata until topic has the expected partitions,
// each with a leader: a real broker learns of a new topic shortly after the
// controller created it, and producing before then fails.
func waitForLeaders(brokers []string, topic string, partitions int) error {
	client, err := sarama.NewClient(brokers, SaramaConfig())
	if err != nil {
		return fmt.Errorf("connecting client: %w", err)
	}
	defer client.Close()
	deadline := time.Now().Add(topicTimeout)
	for {
		err = checkLeaders(client, topic, partitions)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader for every partition after %s: %w", topicTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkLeaders(client sarama.Client, topic string, partitions int) error {
	if err := client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("refreshing metadata: %w", err)
	}
	ids, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("listing partitions: %w", err)
	}
	if len(ids) != partitions {
		return fmt.Errorf("%d of %d partitions visible", len(ids), partitions)
	}
	for _, p := range ids {
		if _, err := client.Leader(topic, p); err != nil {
			return fmt.Errorf("finding leader of partition %d: %w", p, err)
		}
	}
	return nil
}

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// maxTopicPrefix keeps generated names well below Kafka's 249-character limit.
const maxTopicPrefix = 80

// TopicName returns a topic name unique to this call, prefixed with t's name
// in the characters Kafka allows ("." and "_" are avoided, as Kafka treats
// them as the same in metric names and refuses colliding topics).
func TopicName(t testing.TB) string {
	prefix := strings.Trim(unsafeTopicChars.ReplaceAllString(t.Name(), "-"), "-")
	if len(prefix) > maxTopicPrefix {
		prefix = prefix[:maxTopicPrefix]
	}
	if prefix == "" {
		prefix = "test"
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("%s-%x", prefix, suffix)
}
