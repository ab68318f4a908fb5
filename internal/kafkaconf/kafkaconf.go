// Package kafkaconf builds sarama client configurations from the project's
// Kafka settings, for the portal worker, the operator's lag reader and the
// requester client alike.
package kafkaconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"kafkasend.io/kafkasend/pkg/wire"
)

// MinVersion is the oldest protocol version the project speaks: Apache Kafka
// 4.x refuses client protocol versions older than those of Kafka 2.1.
var MinVersion = sarama.V2_1_0_0

// Credentials are the secret parts of a Kafka connection, as bytes.
type Credentials struct {
	// CA is a PEM bundle that verifies the brokers; empty means system roots.
	CA []byte
	// Cert and Key are a PEM client certificate and key for mutual TLS.
	Cert, Key []byte
	// SASL user name and password.
	Username, Password string
}

// Options are the non-secret connection settings.
type Options struct {
	// Version is a Kafka version like "3.7.0"; empty means MinVersion.
	Version  string
	ClientID string
	// TLS enables TLS (with Credentials.CA, Cert and Key when set).
	TLS bool
	// SASLMechanism is "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string
	// DialTimeout bounds connection set-up (default 10s).
	DialTimeout time.Duration
}

// New returns a sarama configuration for these options; callers set the
// producer and consumer parts.
func New(o Options, cr Credentials) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.Version = MinVersion
	if o.Version != "" {
		v, err := sarama.ParseKafkaVersion(o.Version)
		if err != nil {
			return nil, fmt.Errorf("kafka version %q: %w", o.Version, err)
		}
		if !v.IsAtLeast(MinVersion) {
			return nil, fmt.Errorf("kafka version %q is older than %s, the oldest Kafka 4 brokers accept", o.Version, MinVersion)
		}
		c.Version = v
	}
	if o.ClientID != "" {
		c.ClientID = sanitizeClientID(o.ClientID)
	}
	if o.DialTimeout > 0 {
		c.Net.DialTimeout = o.DialTimeout
		c.Net.ReadTimeout = o.DialTimeout * 3
		c.Net.WriteTimeout = o.DialTimeout * 3
	}
	if o.TLS {
		tc, err := TLSConfig(cr)
		if err != nil {
			return nil, err
		}
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = tc
	}
	switch o.SASLMechanism {
	case "":
	case sarama.SASLTypePlaintext:
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case sarama.SASLTypeSCRAMSHA256:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case sarama.SASLTypeSCRAMSHA512:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		return nil, fmt.Errorf("unsupported SASL mechanism %q", o.SASLMechanism)
	}
	if o.SASLMechanism != "" {
		if cr.Username == "" {
			return nil, fmt.Errorf("SASL %s needs a user name", o.SASLMechanism)
		}
		c.Net.SASL.Enable = true
		c.Net.SASL.Handshake = true
		c.Net.SASL.User = cr.Username
		c.Net.SASL.Password = cr.Password
	}
	return c, nil
}

// TLSConfig builds a TLS 1.2+ client configuration from PEM material.
func TLSConfig(cr Credentials) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cr.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cr.CA) {
			return nil, fmt.Errorf("CA bundle holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	if len(cr.Cert) > 0 || len(cr.Key) > 0 {
		pair, err := tls.X509KeyPair(cr.Cert, cr.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// ReadFileCredentials reads credentials from mounted files; empty paths are skipped.
func ReadFileCredentials(caFile, certFile, keyFile, userFile, passwordFile string) (Credentials, error) {
	var cr Credentials
	read := func(p string) ([]byte, error) {
		if p == "" {
			return nil, nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		return b, nil
	}
	var err error
	if cr.CA, err = read(caFile); err != nil {
		return cr, err
	}
	if cr.Cert, err = read(certFile); err != nil {
		return cr, err
	}
	if cr.Key, err = read(keyFile); err != nil {
		return cr, err
	}
	u, err := read(userFile)
	if err != nil {
		return cr, err
	}
	pw, err := read(passwordFile)
	if err != nil {
		return cr, err
	}
	cr.Username = strings.TrimRight(string(u), "\r\n")
	cr.Password = strings.TrimRight(string(pw), "\r\n")
	return cr, nil
}

// sanitizeClientID keeps the characters Kafka accepts in a client ID.
func sanitizeClientID(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, id)
}

// scramClient adapts xdg-go/scram to sarama's SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }

// ChunkProducer sets up sc's producer for kafkasend chunk records: an
// idempotent producer (acks=all, one request in flight per broker, so that
// retries keep a job's chunks in order and never duplicate them), the
// wire partitioner (a record's Partition when set, else the key's hash),
// room for records of maxMessageBytes, and a 1 ms linger.
func ChunkProducer(sc *sarama.Config, maxMessageBytes int) {
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 250 * time.Millisecond
	sc.Producer.Partitioner = wire.NewPartitioner
	sc.Producer.MaxMessageBytes = max(sc.Producer.MaxMessageBytes, maxMessageBytes+4096)
	sc.Producer.Flush.Frequency = time.Millisecond
}
