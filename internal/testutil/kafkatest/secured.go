package kafkatest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Environment of the secured listeners of hack/kafka.sh ("hack/kafka.sh env"
// prints it; hack/test.sh exports it). Credentials are laid out as Strimzi
// gives them to applications.
const (
	// EnvSASLBrokers is the SASL_SSL (SCRAM-SHA-512) listener.
	EnvSASLBrokers = "KAFKASEND_TEST_SASL_BROKERS"
	// EnvMTLSBrokers is the SSL listener that requires a client certificate.
	EnvMTLSBrokers = "KAFKASEND_TEST_MTLS_BROKERS"
	// EnvCA is the cluster CA certificate file (a cluster CA Secret's ca.crt).
	EnvCA = "KAFKASEND_TEST_KAFKA_CA"
	// EnvSCRAMUser is the SCRAM user's name (the KafkaUser's name).
	EnvSCRAMUser = "KAFKASEND_TEST_SCRAM_USER"
	// EnvSCRAMSecret is a directory with the SCRAM user's Secret keys: password.
	EnvSCRAMSecret = "KAFKASEND_TEST_SCRAM_SECRET"
	// EnvMTLSSecret is a directory with the TLS user's Secret keys: user.crt,
	// user.key, ca.crt.
	EnvMTLSSecret = "KAFKASEND_TEST_MTLS_SECRET"
)

// Secured describes the secured listeners of the test broker.
type Secured struct {
	// Plain is the PLAINTEXT listener of the same broker, for test set-up
	// (topics, offsets) that is not under test.
	Plain []string
	// SASL and MTLS are the bootstrap addresses of the two listeners.
	SASL, MTLS []string
	// CAFile verifies the broker on both listeners.
	CAFile string
	// SCRAMUser and SCRAMPasswordFile authenticate on the SASL_SSL listener.
	SCRAMUser, SCRAMPasswordFile string
	// CertFile and KeyFile authenticate on the mTLS listener.
	CertFile, KeyFile string
}

// RequireSecured returns the secured listeners, or skips the test when they
// are not configured (fails it with EnvRequireReal=1).
func RequireSecured(t testing.TB) Secured {
	t.Helper()
	s := Secured{
		Plain: RealBrokers(), SASL: splitAddrs(os.Getenv(EnvSASLBrokers)), MTLS: splitAddrs(os.Getenv(EnvMTLSBrokers)),
		CAFile: os.Getenv(EnvCA), SCRAMUser: os.Getenv(EnvSCRAMUser),
	}
	if d := os.Getenv(EnvSCRAMSecret); d != "" {
		s.SCRAMPasswordFile = filepath.Join(d, "password")
	}
	if d := os.Getenv(EnvMTLSSecret); d != "" {
		s.CertFile, s.KeyFile = filepath.Join(d, "user.crt"), filepath.Join(d, "user.key")
	}
	var missing []string
	for name, ok := range map[string]bool{
		EnvBrokers: len(s.Plain) > 0, EnvSASLBrokers: len(s.SASL) > 0, EnvMTLSBrokers: len(s.MTLS) > 0,
		EnvCA: s.CAFile != "", EnvSCRAMUser: s.SCRAMUser != "", EnvSCRAMSecret: s.SCRAMPasswordFile != "",
		EnvMTLSSecret: s.CertFile != "",
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		for _, f := range []string{s.CAFile, s.SCRAMPasswordFile, s.CertFile, s.KeyFile} {
			if _, err := os.Stat(f); err != nil {
				missing = append(missing, fmt.Sprintf("readable %s (%v)", f, err))
			}
		}
	}
	if len(missing) == 0 {
		return s
	}
	sort.Strings(missing)
	msg := fmt.Sprintf("needs the secured listeners of hack/kafka.sh: missing %s (set them with: eval \"$(hack/kafka.sh env | sed 's/^/export /')\")",
		strings.Join(missing, ", "))
	if os.Getenv(EnvRequireReal) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, EnvRequireReal)
	}
	t.Skip(msg)
	return s
}

func splitAddrs(v string) []string {
	var out []string
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
