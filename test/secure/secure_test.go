// Package secure_test runs the portal, the requester library, the kafkasend
// CLI and the operator's lag reader against the secured listeners of the
// Apache Kafka test broker (hack/kafka.sh): SASL_SSL with SCRAM-SHA-512 and
// mTLS, with credentials laid out as Strimzi users have them (cluster CA
// ca.crt; KafkaUser user.crt, user.key, password).
package secure_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/internal/lag"
	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
	"kafkasend.io/kafkasend/pkg/client"
)

// listener is one secured way into the broker, seen by each component.
type listener struct {
	name    string
	brokers []string
	// kafka is the worker configuration's kafka section (TLS, SASL).
	kafka func(t *testing.T) config.Kafka
	// client is the requester library's TLS and SASL settings.
	tls  *client.TLS
	sasl *client.SASL
	// cli are the kafkasend flags.
	cli []string
	// opts and creds are the lag reader's connection settings.
	opts  kafkaconf.Options
	creds func(t *testing.T) kafkaconf.Credentials
}

func listeners(t *testing.T) []listener {
	s := kafkatest.RequireSecured(t)
	return []listener{
		{
			name: "sasl_ssl", brokers: s.SASL,
			kafka: func(t *testing.T) config.Kafka {
				// The operator mounts the user name next to the password.
				user := filepath.Join(t.TempDir(), "username")
				if err := os.WriteFile(user, []byte(s.SCRAMUser), 0o600); err != nil {
					t.Fatal(err)
				}
				return config.Kafka{
					TLS:  &config.TLS{CAFile: s.CAFile},
					SASL: &config.SASL{Mechanism: "SCRAM-SHA-512", UsernameFile: user, PasswordFile: s.SCRAMPasswordFile},
				}
			},
			tls:  &client.TLS{CAFile: s.CAFile},
			sasl: &client.SASL{Mechanism: "SCRAM-SHA-512", Username: s.SCRAMUser, PasswordFile: s.SCRAMPasswordFile},
			cli: []string{"--ca-file", s.CAFile, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", s.SCRAMUser,
				"--sasl-password-file", s.SCRAMPasswordFile},
			opts: kafkaconf.Options{TLS: true, SASLMechanism: "SCRAM-SHA-512", DialTimeout: 5 * time.Second},
			creds: func(t *testing.T) kafkaconf.Credentials {
				cr, err := kafkaconf.ReadFileCredentials(s.CAFile, "", "", "", s.SCRAMPasswordFile)
				if err != nil {
					t.Fatal(err)
				}
				cr.Username = s.SCRAMUser
				return cr
			},
		},
		{
			name: "mtls", brokers: s.MTLS,
			kafka: func(*testing.T) config.Kafka {
				return config.Kafka{TLS: &config.TLS{CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile}}
			},
			tls:  &client.TLS{CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile},
			cli:  []string{"--ca-file", s.CAFile, "--cert-file", s.CertFile, "--key-file", s.KeyFile},
			opts: kafkaconf.Options{TLS: true, DialTimeout: 5 * time.Second},
			creds: func(t *testing.T) kafkaconf.Credentials {
				cr, err := kafkaconf.ReadFileCredentials(s.CAFile, s.CertFile, s.KeyFile, "", "")
				if err != nil {
					t.Fatal(err)
				}
				return cr
			},
		},
	}
}

// dial connects a sarama client and asks for metadata, the first thing
// every component does.
func dial(brokers []string, o kafkaconf.Options, cr kafkaconf.Credentials) error {
	sc, err := kafkaconf.New(o, cr)
	if err != nil {
		return err
	}
	sc.Metadata.Retry.Max = 0
	sc.Net.DialTimeout, sc.Net.ReadTimeout, sc.Net.WriteTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	c, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.RefreshMetadata()
}

// TestListenersRefuseTheUnauthenticated shows the listeners are really
// secured, so that the tests below prove the components authenticate.
func TestListenersRefuseTheUnauthenticated(t *testing.T) {
	s := kafkatest.RequireSecured(t)
	ls := listeners(t)
	for _, l := range ls {
		if err := dial(l.brokers, l.opts, l.creds(t)); err != nil {
			t.Fatalf("%s with its credentials: %v", l.name, err)
		}
	}
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"SASL_SSL without SASL": func() error {
			return dial(s.SASL, kafkaconf.Options{TLS: true}, kafkaconf.Credentials{CA: ca})
		},
		"SASL_SSL with a wrong password": func() error {
			return dial(s.SASL, kafkaconf.Options{TLS: true, SASLMechanism: "SCRAM-SHA-512"},
				kafkaconf.Credentials{CA: ca, Username: s.SCRAMUser, Password: "not-the-password"})
		},
		"mTLS without a client certificate": func() error {
			return dial(s.MTLS, kafkaconf.Options{TLS: true}, kafkaconf.Credentials{CA: ca})
		},
		"mTLS without verifying against the cluster CA": func() error {
			cr := ls[1].creds(t)
			cr.CA = nil // system roots do not know the test CA
			return dial(s.MTLS, kafkaconf.Options{TLS: true}, cr)
		},
	}
	for name, try := range cases {
		if err := try(); err == nil {
			t.Errorf("%s: connected, want a refusal", name)
		}
	}
}

// pipeline is a portal in this process over a secured listener, with its
// topics and a loopback upstream.
type pipeline struct {
	requests, replies string
	upstreamHits      func() int
}

func startPipeline(t *testing.T, l listener) pipeline {
	t.Helper()
	s := kafkatest.RequireSecured(t)
	requests := kafkatest.CreateTopic(t, s.Plain, 2)
	replies := kafkatest.CreateTopic(t, s.Plain, 2)
	var mu sync.Mutex
	hits := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = w.Write(append([]byte("echo: "), b...))
	}))
	t.Cleanup(up.Close)

	c := config.Default()
	c.Kafka = l.kafka(t)
	def := config.Default().Kafka
	c.Kafka.InitialOffset, c.Kafka.MaxMessageBytes = def.InitialOffset, def.MaxMessageBytes
	c.Kafka.SessionTimeout, c.Kafka.HeartbeatInterval, c.Kafka.RebalanceProtocol = def.SessionTimeout, def.HeartbeatInterval, def.RebalanceProtocol
	c.Kafka.Brokers = l.brokers
	c.Kafka.ConsumerGroup = "g-" + requests
	c.Kafka.Version = kafkatest.SaramaConfig().Version.String()
	c.Topics = config.Topics{Requests: requests, Replies: replies}
	c.Upstream.BaseURL = up.URL + "/api"
	c.Upstream.AllowInsecureHTTP = true
	c.Timeouts.Drain = metav1.Duration{Duration: 5 * time.Second}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := portal.New(c, portal.Options{Log: logr.Discard(), SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatalf("portal over %s: %v", l.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("portal stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("portal did not stop within 30s")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !p.Ready() {
		select {
		case err := <-done:
			t.Fatalf("portal over %s stopped before joining its group: %v", l.name, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("portal over %s did not join its group within 60s", l.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return pipeline{requests: requests, replies: replies, upstreamHits: func() int {
		mu.Lock()
		defer mu.Unlock()
		return hits
	}}
}

// TestPortalAndClientOverSecuredKafka: the portal consumes and answers, and
// the requester library produces and reads answers, over each listener;
// a multi-chunk body proves chunking works through TLS too.
func TestPortalAndClientOverSecuredKafka(t *testing.T) {
	for _, l := range listeners(t) {
		t.Run(l.name, func(t *testing.T) {
			p := startPipeline(t, l)
			c, err := client.New(client.Config{
				Brokers: l.brokers, RequestsTopic: p.requests, ReplyTopic: p.replies, ReplyPartition: 1,
				Version: kafkatest.SaramaConfig().Version.String(), TLS: l.tls, SASL: l.sasl,
				MaxMessageBytes: 16 << 10, Timeout: 60 * time.Second,
			})
			if err != nil {
				t.Fatalf("client over %s: %v", l.name, err)
			}
			defer c.Close()
			hc := &http.Client{Transport: &client.Transport{Client: c}}
			body := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB: several 16 KiB chunks
			for i, b := range [][]byte{[]byte("hello " + l.name), body} {
				resp, err := hc.Post("http://portal/api-ignored/echo", "text/plain", bytes.NewReader(b))
				if err != nil {
					t.Fatalf("job %d over %s: %v", i, l.name, err)
				}
				got, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !bytes.Equal(got, append([]byte("echo: "), b...)) {
					t.Fatalf("job %d: status %d, %d bytes %.40q", i, resp.StatusCode, len(got), got)
				}
			}
			if h := p.upstreamHits(); h != 2 {
				t.Errorf("upstream called %d times, want 2", h)
			}
		})
	}
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

func cliBinary(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kafkasend-secure-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "kafkasend")
		if out, err := exec.Command("go", "build", "-o", cliBin, "kafkasend.io/kafkasend/cmd/kafkasend").CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("building kafkasend: %w\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

// hermeticEnv is the test's environment without the developer's own
// KAFKASEND_* requester settings.
func hermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKASEND_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestCLIOverSecuredKafka runs the kafkasend send binary over each listener.
func TestCLIOverSecuredKafka(t *testing.T) {
	bin := cliBinary(t)
	for _, l := range listeners(t) {
		t.Run(l.name, func(t *testing.T) {
			p := startPipeline(t, l)
			args := append([]string{"send", "--brokers", strings.Join(l.brokers, ","), "--topic", p.requests,
				"--reply-topic", p.replies, "--reply-partition", "0", "--timeout", "60s",
				"--kafka-version", kafkatest.SaramaConfig().Version.String()}, l.cli...)
			args = append(args, "-d", "from the cli", "/echo")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = hermeticEnv()
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("kafkasend send over %s: %v\nstdout %q\nstderr %q", l.name, err, out.String(), errb.String())
			}
			if out.String() != "echo: from the cli" {
				t.Fatalf("stdout %q, want the echoed body (stderr %q)", out.String(), errb.String())
			}
		})
	}
}

// TestLagReaderOverSecuredKafka measures a group's lag as the operator's
// autoscaler does (internal/lag through a kafkaconf client), over each
// listener, after set-up on the plaintext listener.
func TestLagReaderOverSecuredKafka(t *testing.T) {
	s := kafkatest.RequireSecured(t)
	topic := kafkatest.CreateTopic(t, s.Plain, 2)
	group := "g-" + topic
	sc := kafkatest.SaramaConfig()
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(s.Plain, sc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		part := int32(0)
		if i >= 4 {
			part = 1
		}
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part, Value: sarama.StringEncoder("m")}); err != nil {
			t.Fatal(err)
		}
	}
	_ = prod.Close()
	commit(t, s.Plain, group, topic, 0, 3) // partition 0: 4 messages, 3 consumed -> lag 1; partition 1: 3 -> lag 3

	for _, l := range listeners(t) {
		t.Run(l.name, func(t *testing.T) {
			o := l.opts
			o.Version, o.ClientID = kafkatest.SaramaConfig().Version.String(), "kafkasend-operator"
			cfg, err := kafkaconf.New(o, l.creds(t))
			if err != nil {
				t.Fatal(err)
			}
			c, err := sarama.NewClient(l.brokers, cfg)
			if err != nil {
				t.Fatalf("lag reader client over %s: %v", l.name, err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := lag.Measure(ctx, c, group, topic, true)
			if err != nil {
				t.Fatalf("measuring lag over %s: %v", l.name, err)
			}
			if r.Lag != 4 || r.Partitions != 2 || len(r.PerPartition) != 2 || r.PerPartition[0].Lag != 1 || r.PerPartition[1].Lag != 3 {
				t.Fatalf("lag %+v, want total 4 (1 on partition 0, 3 on partition 1)", r)
			}
		})
	}
}

// commit stores a committed offset for group on topic/partition.
func commit(t *testing.T, brokers []string, group, topic string, partition int32, offset int64) {
	t.Helper()
	c, err := sarama.NewClient(brokers, kafkatest.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	om, err := sarama.NewOffsetManagerFromClient(group, c)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(offset, "")
	om.Commit()
	var errs []error
	_ = pom.Close()
	for e := range pom.Errors() {
		errs = append(errs, e)
	}
	_ = om.Close()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("committing offset %d of %s/%d: %v", offset, topic, partition, err)
	}
}
