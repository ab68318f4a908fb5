// Package cli is the kafkasend command line: send, await, demo, bench,
// version and completion. The command in cmd/kafkasend only wires it to the
// process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"kafkasend.io/kafkasend/internal/bench"
	"kafkasend.io/kafkasend/internal/version"
	"kafkasend.io/kafkasend/pkg/client"
	"kafkasend.io/kafkasend/pkg/wire"
)

// Exit codes.
const (
	// ExitOK: an answer was printed (any HTTP status unless --fail).
	ExitOK = 0
	// ExitError: a failure to send or receive (Kafka, files); one line on
	// stderr says why.
	ExitError = 1
	// ExitUsage: bad command line.
	ExitUsage = 2
	// ExitHTTPError: with --fail, the upstream answered with status 400 or more.
	ExitHTTPError = 22
)

// kindExitCodes are the exit codes of the portal's error responses, by kind
// (documented in the root command's help).
var kindExitCodes = []struct {
	kind wire.ErrorKind
	code int
}{
	{wire.ErrorTimeout, 3},
	{wire.ErrorUnreachable, 4},
	{wire.ErrorRejected, 5},
	{wire.ErrorTooLarge, 6},
	{wire.ErrorMalformed, 7},
	{wire.ErrorIncomplete, 8},
	{wire.ErrorAuth, 9},
	{wire.ErrorInternal, 10},
}

// IO is the process's environment.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads environment variables (os.Getenv).
	Getenv func(string) string
	// Terminal reports whether Stdout is a terminal (live progress).
	Terminal bool
	// StderrTerminal reports whether Stderr is a terminal: -v then redraws
	// one progress line instead of printing a line every few seconds.
	StderrTerminal bool
}

func exitCodesHelp() string {
	var b strings.Builder
	b.WriteString(`Exit codes:
  0   an answer was printed (any HTTP status, unless --fail)
  1   a failure to send or receive (Kafka, files), explained on stderr
  2   a usage error
`)
	for _, k := range kindExitCodes {
		fmt.Fprintf(&b, "  %-3d the portal answered with an error response of kind %s\n", k.code, k.kind)
	}
	b.WriteString("  22  with --fail, the upstream answered with an HTTP status of 400 or more\n")
	b.WriteString(`An error response is explained on stderr as "kafkasend: KIND: MESSAGE (job ID)".
`)
	return b.String()
}

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(ctx context.Context, args []string, sio IO) int {
	if sio.Getenv == nil {
		sio.Getenv = os.Getenv
	}
	if sio.Stdin == nil {
		sio.Stdin = strings.NewReader("")
	}
	root := newRoot(ctx, sio)
	if len(args) == 0 {
		root.SetOut(sio.Stderr)
		_ = root.Usage()
		return ExitUsage
	}
	root.SetArgs(singleDashLongFlags(root, args))
	err := root.ExecuteContext(ctx)
	return report(err, sio.Stderr)
}

func newRoot(ctx context.Context, sio IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "kafkasend",
		Short: "Send REST jobs over Kafka to a kafkasend portal",
		Long: `kafkasend sends REST jobs over Kafka to a kafkasend portal and prints the
answers; it also runs a self-contained demo and the benchmarks.

` + exitCodesHelp(),
		Example: `  export KAFKASEND_BROKERS=kafka-0:9092 KAFKASEND_TOPIC=orders.requests \
         KAFKASEND_REPLY_TOPIC=orders.replies
  kafkasend send -i /v1/items/7
  id=$(kafkasend send --async -d @report.json /v1/reports) && kafkasend await -v "$id"
  source <(kafkasend completion bash)`,
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Unknown commands are usage errors (exit 2), not "no Run".
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetVersionTemplate("kafkasend {{.Version}}\n")
	root.SetOut(sio.Stdout)
	root.SetErr(sio.Stderr)
	root.SetIn(sio.Stdin)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.AddCommand(newSendCommand(sio), newAwaitCommand(sio), newDemoCommand(sio), newBenchCommand(ctx, sio), newVersionCommand(sio))
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

func newVersionCommand(sio IO) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version (the same as --version)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(sio.Stdout, version.Line("kafkasend"))
			return nil
		},
	}
}

func newBenchCommand(ctx context.Context, sio IO) *cobra.Command {
	return &cobra.Command{
		Use:   "bench --scenario NAME",
		Short: "Measure a portal process: mixed, concurrency, throughput, overhead or large (docs/benchmarks.md)",
		// bench parses its own flags (kafkasend bench --help lists them).
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := bench.Main(ctx, args, sio.Stdout, sio.Stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
}

// singleDashLongFlags rewrites -name and -name=value into --name for the
// long flags of the command line's subcommand, as the flag package before
// pflag accepted them (kafkasend send -timeout 5s). Combined short flags
// (-iv) are left alone.
func singleDashLongFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil || cmd.DisableFlagParsing {
		return args
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && cmd.Flags().Lookup(name) != nil {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
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
	var ce *client.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kafkasend: %s\n", oneLine(ue.msg))
		return ExitUsage
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"):
		fmt.Fprintf(stderr, "kafkasend: %s\n", oneLine(err.Error()))
		return ExitUsage
	}
	fmt.Fprintf(stderr, "kafkasend: %s\n", oneLine(err.Error()))
	if errors.As(err, &ce) {
		for _, k := range kindExitCodes {
			if errors.Is(err, &client.Error{Kind: k.kind}) {
				return k.code
			}
		}
	}
	return ExitError
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("%s takes no arguments", cmd.Name())}
	}
	return nil
}

// exactlyOne requires one positional argument, named what.
func exactlyOne(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Sprintf("%s needs exactly one %s (see kafkasend %s --help)", cmd.Name(), what, cmd.Name())}
		}
		return nil
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
func (k *kafkaFlags) register(fs *pflag.FlagSet, getenv func(string) string) {
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
	_ = cobra.MarkFlagFilename(fs, "ca-file", "pem", "crt")
	_ = cobra.MarkFlagFilename(fs, "cert-file", "pem", "crt")
	_ = cobra.MarkFlagFilename(fs, "key-file", "pem", "key")
	_ = cobra.MarkFlagFilename(fs, "sasl-password-file")
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
