package kafkatest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestRealBrokersAndKind(t *testing.T) {
	for _, tc := range []struct {
		env      string
		want     []string
		wantKind string
	}{
		{env: "", want: nil, wantKind: KindFake},
		{env: " , ", want: nil, wantKind: KindFake},
		{env: "127.0.0.1:9092", want: []string{"127.0.0.1:9092"}, wantKind: KindKafka},
		{env: " 127.0.0.1:1, 127.0.0.1:2 ,", want: []string{"127.0.0.1:1", "127.0.0.1:2"}, wantKind: KindKafka},
	} {
		t.Run(fmt.Sprintf("%q", tc.env), func(t *testing.T) {
			t.Setenv(EnvBrokers, tc.env)
			if got := RealBrokers(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("RealBrokers() = %q, want %q", got, tc.want)
			}
			if got := Kind(); got != tc.wantKind {
				t.Errorf("Kind() = %q, want %q", got, tc.wantKind)
			}
		})
	}
}

// recorder stands in for testing.TB to observe whether RequireReal skips or fails.
type recorder struct {
	testing.TB
	calls []string
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.calls = append(r.calls, "fatal") }
func (r *recorder) Skip(...any)           { r.calls = append(r.calls, "skip") }

func TestRequireReal(t *testing.T) {
	for _, tc := range []struct {
		brokers, require string
		want             string
	}{
		{brokers: "127.0.0.1:9092", want: ""},
		{brokers: "127.0.0.1:9092", require: "1", want: ""},
		{brokers: "", want: "skip"},
		{brokers: "", require: "0", want: "skip"},
		{brokers: "", require: "1", want: "fatal"},
	} {
		t.Run(tc.brokers+"/"+tc.require, func(t *testing.T) {
			t.Setenv(EnvBrokers, tc.brokers)
			t.Setenv(EnvRequireReal, tc.require)
			r := &recorder{TB: t}
			RequireReal(r)
			got := ""
			if len(r.calls) > 0 {
				got = r.calls[0]
			}
			if got != tc.want {
				t.Errorf("RequireReal first did %q, want %q (calls %v)", got, tc.want, r.calls)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	if v, err := parseVersion(""); err != nil || v != DefaultVersion {
		t.Errorf(`parseVersion("") = %v, %v; want %v`, v, err, DefaultVersion)
	}
	if v, err := parseVersion("2.1.0"); err != nil || v != sarama.V2_1_0_0 {
		t.Errorf(`parseVersion("2.1.0") = %v, %v; want %v`, v, err, sarama.V2_1_0_0)
	}
	if _, err := parseVersion("four"); err == nil || !strings.Contains(err.Error(), EnvVersion) {
		t.Errorf(`parseVersion("four") error = %v, want one naming %s`, err, EnvVersion)
	}
}

var validTopic = regexp.MustCompile(`^[a-zA-Z0-9-]{1,249}$`)

func TestTopicName(t *testing.T) {
	names := map[string]bool{}
	for _, sub := range []string{"plain", "with space/and.dots_und", strings.Repeat("x", 300)} {
		t.Run(sub, func(t *testing.T) {
			for range 2 {
				name := TopicName(t)
				if !validTopic.MatchString(name) {
					t.Errorf("TopicName = %q: not a safe Kafka topic name", name)
				}
				if !strings.HasPrefix(name, "TestTopicName-") {
					t.Errorf("TopicName = %q: does not start with the test's name", name)
				}
				if names[name] {
					t.Errorf("TopicName = %q twice", name)
				}
				names[name] = true
			}
		})
	}
}

func TestCreateTopicAndCleanup(t *testing.T) {
	brokers := Brokers(t)
	admin := Admin(t, brokers)
	var topic string
	t.Run("create", func(t *testing.T) {
		topic = CreateTopicWith(t, brokers, 3, map[string]string{"retention.ms": "60000"})
		topics, err := admin.ListTopics()
		if err != nil {
			t.Fatalf("listing topics: %v", err)
		}
		detail, ok := topics[topic]
		if !ok {
			t.Fatalf("topic %s not listed after CreateTopic", topic)
		}
		if detail.NumPartitions != 3 {
			t.Errorf("topic %s has %d partitions, want 3", topic, detail.NumPartitions)
		}
		client, err := sarama.NewClient(brokers, SaramaConfig())
		if err != nil {
			t.Fatalf("creating client: %v", err)
		}
		defer client.Close()
		for p := range int32(3) {
			if _, err := client.Leader(topic, p); err != nil {
				t.Errorf("partition %d has no leader right after CreateTopic: %v", p, err)
			}
		}
	})
	if topic == "" {
		t.FailNow()
	}
	// A real broker learns of the deletion from its controller shortly after
	// DeleteTopics returns.
	deadline := time.Now().Add(10 * time.Second)
	for {
		topics, err := admin.ListTopics()
		if err != nil {
			t.Fatalf("listing topics: %v", err)
		}
		if _, ok := topics[topic]; !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s still exists 10s after its test ended", topic)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
