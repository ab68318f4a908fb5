package kafkaconf

import (
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

func TestNew(t *testing.T) {
	c, err := New(Options{Version: "3.7.0", ClientID: "kafkasend-portal.ns/name", SASLMechanism: "SCRAM-SHA-512"},
		Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != sarama.V3_7_0_0 {
		t.Errorf("version %v", c.Version)
	}
	if c.ClientID != "kafkasend-portal.ns_name" {
		t.Errorf("client ID %q not sanitized", c.ClientID)
	}
	if !c.Net.SASL.Enable || c.Net.SASL.SCRAMClientGeneratorFunc == nil || c.Net.SASL.User != "u" {
		t.Errorf("SCRAM not set up: %+v", c.Net.SASL)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("sarama refuses the config: %v", err)
	}
	if d, _ := New(Options{}, Credentials{}); d.Version != MinVersion {
		t.Errorf("default version %v, want %v", d.Version, MinVersion)
	}
}

func TestNewRefusesWithAReason(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		cr   Credentials
		want string
	}{
		{Options{Version: "0.10.2.0"}, Credentials{}, "older than"},
		{Options{Version: "x"}, Credentials{}, `kafka version "x"`},
		{Options{SASLMechanism: "GSSAPI"}, Credentials{}, "unsupported SASL mechanism"},
		{Options{SASLMechanism: "PLAIN"}, Credentials{}, "needs a user name"},
		{Options{TLS: true}, Credentials{CA: []byte("not pem")}, "no PEM certificate"},
		{Options{TLS: true}, Credentials{Cert: []byte("x"), Key: []byte("y")}, "client certificate"},
	} {
		_, err := New(tc.o, tc.cr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
}

func TestChunkProducerIsIdempotent(t *testing.T) {
	c, _ := New(Options{}, Credentials{})
	ChunkProducer(c, 2<<20)
	if err := c.Validate(); err != nil {
		t.Fatalf("sarama refuses the producer config: %v", err)
	}
	if !c.Producer.Idempotent || c.Net.MaxOpenRequests != 1 || c.Producer.MaxMessageBytes < 2<<20 {
		t.Errorf("not an idempotent chunk producer: %+v", c.Producer)
	}
}
