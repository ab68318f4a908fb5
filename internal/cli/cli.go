// Package cli is the kafkasend command line: send, await, demo and bench. The
// command in cmd/kafkasend only wires it to the process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"kafkasend.io/kafkasend/internal/bench"
	"kafkasend.io/kafkasend/pkg/client"
)

// Exit codes.
const (
	// ExitOK: an answer was printed (any HTTP status unless --fail).
	ExitOK = 0
	// ExitError: an error response (timeout, rejected, ...) or a failure to
	// send or receive; one line on stderr says why.
	ExitError = 1
	// ExitUsage: bad command line.
	ExitUsage = 2
	// ExitHTTPError: with --fail, the upstream answered with status 400 or more.
	ExitHTTPError = 22
)

// IO is the process's environment.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads environment variables (os.Getenv).
	Getenv func(string) string
	// Terminal reports whether Stdout is a terminal (live progress).
	Terminal bool
}

const usage = `kafkasend: send REST jobs over Kafka to a kafkasend portal.

Usage:
  kafkasend send [options] PATH     send one HTTP request and print the answer
  kafkasend await [options] JOBID   wait for the answer to a job sent with --async
  kafkasend demo [options]          run a portal, an upstream and a workload on an
                                    embedded broker, and compare sync with async
  kafkasend bench --scenario NAME   measure a portal process: mixed, concurrency,
                                    throughput, overhead or large (docs/benchmarks.md)

Run 'kafkasend COMMAND --help' for a command's options and examples.

Exit codes: 0 an answer was printed (any HTTP status, unless --fail);
1 an error response (timeout, rejected, unreachable, ...) or a Kafka failure,
  explained on stderr as "kafkasend: KIND: MESSAGE";
2 a usage error; 22 with --fail, an HTTP status of 400 or more.
`

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(ctx context.Context, args []string, io IO) int {
	if io.Getenv == nil {
		io.Getenv = os.Getenv
	}
	if len(args) == 0 {
		fmt.Fprint(io.Stderr, usage)
		return ExitUsage
	}
	var err error
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(io.Stdout, usage)
		return ExitOK
	case "send":
		err = runSend(ctx, args[1:], io)
	case "await":
		err = runAwait(ctx, args[1:], io)
	case "demo":
		err = runDemo(ctx, args[1:], io)
	case "bench":
		return bench.Main(ctx, args[1:], io.Stdout, io.Stderr)
	default:
		fmt.Fprintf(io.Stderr, "kafkasend: unknown command %q\n\n%s", args[0], usage)
		return ExitUsage
	}
	return report(err, io.Stderr)
}

// exitError carries an exit code without a message of its own.
type exitError struct{ code int }

func (e exitError) Error() string { return "exit " + strconv.Itoa(e.code) }

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func report(err error, stderr io.Writer) int {
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kafkasend: %s\n", ue.msg)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "kafkasend: %s\n", oneLine(err.Error()))
	return ExitError
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// parseInterleaved parses flags that may come before or after positional
// arguments (kafkasend send /path -i) and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// kafkaFlags are the connection options shared by send and await.
type kafkaFlags struct {
	brokers, topic, replyTopic string
	replyPartition             int
	timeout                    time.Duration
	version, clientID          string
	maxMessageBytes            int
	tls                        bool
	caFile, certFile, keyFile  string
	saslMechanism, saslUser    string
	saslPasswordFile           string
	saslPassword               string
}

// register adds the flags, with defaults from the environment.
func (k *kafkaFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&k.brokers, "brokers", env("KAFKASEND_BROKERS", ""), "comma-separated Kafka bootstrap brokers (env KAFKASEND_BROKERS)")
	fs.StringVar(&k.topic, "topic", env("KAFKASEND_TOPIC", ""), "requests topic of the portal (env KAFKASEND_TOPIC)")
	fs.StringVar(&k.replyTopic, "reply-topic", env("KAFKASEND_REPLY_TOPIC", ""), "reply topic to read answers from (env KAFKASEND_REPLY_TOPIC)")
	fs.IntVar(&k.replyPartition, "reply-partition", envInt(getenv, "KAFKASEND_REPLY_PARTITION", 0),
		"partition of the reply topic this requester claims; concurrent requesters use different ones (env KAFKASEND_REPLY_PARTITION)")
	fs.DurationVar(&k.timeout, "timeout", envDuration(getenv, "KAFKASEND_TIMEOUT", client.DefaultTimeout),
		"job deadline: how long the portal may take and how long to wait (env KAFKASEND_TIMEOUT)")
	fs.StringVar(&k.version, "kafka-version", env("KAFKASEND_KAFKA_VERSION", ""), "Kafka protocol version, e.g. 3.7.0 (default 2.1.0; env KAFKASEND_KAFKA_VERSION)")
	fs.StringVar(&k.clientID, "client-id", env("KAFKASEND_CLIENT_ID", "kafkasend-cli"), "Kafka client ID (env KAFKASEND_CLIENT_ID)")
	fs.IntVar(&k.maxMessageBytes, "max-message-bytes", envInt(getenv, "KAFKASEND_MAX_MESSAGE_BYTES", client.DefaultMaxMessageBytes),
		"largest chunk record to produce (env KAFKASEND_MAX_MESSAGE_BYTES)")
	fs.BoolVar(&k.tls, "tls", env("KAFKASEND_TLS", "") == "true", "connect to Kafka with TLS (env KAFKASEND_TLS=true)")
	fs.StringVar(&k.caFile, "ca-file", env("KAFKASEND_CA_FILE", ""), "PEM CA bundle for the brokers (implies --tls; env KAFKASEND_CA_FILE)")
	fs.StringVar(&k.certFile, "cert-file", env("KAFKASEND_CERT_FILE", ""), "PEM client certificate (implies --tls; env KAFKASEND_CERT_FILE)")
	fs.StringVar(&k.keyFile, "key-file", env("KAFKASEND_KEY_FILE", ""), "PEM client key (env KAFKASEND_KEY_FILE)")
	fs.StringVar(&k.saslMechanism, "sasl-mechanism", env("KAFKASEND_SASL_MECHANISM", ""), "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env KAFKASEND_SASL_MECHANISM)")
	fs.StringVar(&k.saslUser, "sasl-user", env("KAFKASEND_SASL_USER", ""), "SASL user name (env KAFKASEND_SASL_USER)")
	fs.StringVar(&k.saslPasswordFile, "sasl-password-file", env("KAFKASEND_SASL_PASSWORD_FILE", ""),
		"file holding the SASL password (env KAFKASEND_SASL_PASSWORD_FILE, or the password itself in KAFKASEND_SASL_PASSWORD)")
	k.saslPassword = getenv("KAFKASEND_SASL_PASSWORD")
}

func envInt(getenv func(string) string, name string, def int) int {
	if v, err := strconv.Atoi(getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(getenv(name)); err == nil {
		return v
	}
	return def
}

// config turns the flags into a client configuration.
func (k *kafkaFlags) config() (client.Config, error) {
	var missing []string
	if k.brokers == "" {
		missing = append(missing, "--brokers (KAFKASEND_BROKERS)")
	}
	if k.topic == "" {
		missing = append(missing, "--topic (KAFKASEND_TOPIC)")
	}
	if k.replyTopic == "" {
		missing = append(missing, "--reply-topic (KAFKASEND_REPLY_TOPIC)")
	}
	if len(missing) > 0 {
		return client.Config{}, usageError{"missing " + strings.Join(missing, ", ")}
	}
	if k.replyPartition < 0 {
		return client.Config{}, usageError{"--reply-partition must not be negative"}
	}
	if k.timeout <= 0 {
		return client.Config{}, usageError{"--timeout must be positive"}
	}
	var brokers []string
	for b := range strings.SplitSeq(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	cfg := client.Config{
		Brokers: brokers, RequestsTopic: k.topic, ReplyTopic: k.replyTopic, ReplyPartition: int32(k.replyPartition),
		Version: k.version, ClientID: k.clientID, MaxMessageBytes: k.maxMessageBytes, Timeout: k.timeout,
	}
	if k.tls || k.caFile != "" || k.certFile != "" {
		cfg.TLS = &client.TLS{CAFile: k.caFile, CertFile: k.certFile, KeyFile: k.keyFile}
	}
	if k.saslMechanism != "" {
		cfg.SASL = &client.SASL{Mechanism: k.saslMechanism, Username: k.saslUser, Password: k.saslPassword, PasswordFile: k.saslPasswordFile}
	}
	return cfg, nil
}

// newFlagSet returns a flag set that prints usage text to stderr on
// -h/--help and on errors.
func newFlagSet(name, help string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, help)
		fmt.Fprintln(out, "\nOptions:")
		fs.PrintDefaults()
	}
	return fs
}
