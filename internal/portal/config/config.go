// Package config is the portal worker's configuration file: the data-plane
// part of a PortalPipeline spec, rendered by the controller into a ConfigMap
// and read by `portal --config FILE`. Secrets never appear here: only the
// paths of the files where they are mounted.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Config is the whole portal configuration.
type Config struct {
	Kafka       Kafka       `json:"kafka"`
	Topics      Topics      `json:"topics"`
	Upstream    Upstream    `json:"upstream"`
	OAuth       *OAuth      `json:"oauth,omitempty"`
	Concurrency Concurrency `json:"concurrency"`
	Timeouts    Timeouts    `json:"timeouts"`
	Retries     Retries     `json:"retries"`
	Handover    *Handover   `json:"handover,omitempty"`
}

// Handover configures how workers hand running jobs over to a partition's
// next owner (docs/protocol.md §11).
type Handover struct {
	// KeyFile holds the pipeline's handover key (at least 16 bytes; the
	// operator generates 32 random bytes per pipeline). Workers sign their
	// handover control records with it (HMAC-SHA256) and ignore records
	// without a valid signature, so that whoever may write to the requests
	// topic cannot forge one. Empty: records are trusted by holder name.
	KeyFile string `json:"keyFile,omitempty"`
}

// Kafka says how to reach the brokers.
type Kafka struct {
	Brokers       []string `json:"brokers"`
	ConsumerGroup string   `json:"consumerGroup"`
	// InitialOffset is "earliest" or "latest": where a group with no commit starts.
	InitialOffset string `json:"initialOffset,omitempty"`
	// Version is the Kafka protocol version to speak (e.g. "3.7.0"); empty means
	// the project's default (at least 2.1.0, the oldest a 4.x broker accepts).
	Version  string `json:"version,omitempty"`
	ClientID string `json:"clientID,omitempty"`
	// MaxMessageBytes bounds each produced chunk (value and headers).
	MaxMessageBytes int   `json:"maxMessageBytes,omitempty"`
	TLS             *TLS  `json:"tls,omitempty"`
	SASL            *SASL `json:"sasl,omitempty"`
	// SessionTimeout is the consumer group session timeout: how long the
	// group waits for a silent member before giving its partitions away.
	SessionTimeout metav1.Duration `json:"sessionTimeout,omitempty"`
	// HeartbeatInterval is how often a member heartbeats; below a third of
	// SessionTimeout.
	HeartbeatInterval metav1.Duration `json:"heartbeatInterval,omitempty"`
	// RebalanceProtocol is "cooperative" (KIP-429 incremental: only moving
	// partitions are revoked) or "eager" (every partition revoked at each
	// membership change; the first step of a migration from old workers).
	RebalanceProtocol string `json:"rebalanceProtocol,omitempty"`
}

// Rebalance protocols.
const (
	RebalanceCooperative = "cooperative"
	RebalanceEager       = "eager"
)

// TLS for the Kafka connection. Files are mounted from Secrets.
type TLS struct {
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// SASL for the Kafka connection.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism    string `json:"mechanism"`
	UsernameFile string `json:"usernameFile"`
	PasswordFile string `json:"passwordFile"`
}

// Topics the portal reads and writes.
type Topics struct {
	Requests   string `json:"requests"`
	Replies    string `json:"replies"`
	DeadLetter string `json:"deadLetter,omitempty"`
	// AllowedReplyTopics are topics, besides Replies, that a job may name as
	// its reply topic.
	AllowedReplyTopics []string `json:"allowedReplyTopics,omitempty"`
	// AllowedReplyTopicPrefixes allow every reply topic starting with one of
	// them.
	AllowedReplyTopicPrefixes []string `json:"allowedReplyTopicPrefixes,omitempty"`
}

// ReplyTopicAllowed reports whether a job may be answered on topic: the
// pipeline's replies topic, one of AllowedReplyTopics, or one starting with
// one of AllowedReplyTopicPrefixes. The empty name means Replies.
func (t Topics) ReplyTopicAllowed(topic string) bool {
	if topic == "" || topic == t.Replies {
		return true
	}
	for _, a := range t.AllowedReplyTopics {
		if topic == a {
			return true
		}
	}
	for _, p := range t.AllowedReplyTopicPrefixes {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

// Upstream is the one HTTP API jobs may call.
type Upstream struct {
	// BaseURL fixes scheme, host, port and base path of every call.
	BaseURL string `json:"baseURL"`
	// AllowInsecureHTTP permits an http:// BaseURL.
	AllowInsecureHTTP bool              `json:"allowInsecureHTTP,omitempty"`
	CAFile            string            `json:"caFile,omitempty"`
	MaxRequestBytes   int64             `json:"maxRequestBytes"`
	MaxResponseBytes  int64             `json:"maxResponseBytes"`
	Headers           map[string]string `json:"headers,omitempty"`
	// FollowRedirects follows redirects that stay on the BaseURL's origin.
	FollowRedirects bool `json:"followRedirects,omitempty"`
	// HeaderFiles are headers added to every call whose values are read
	// from files (mounted Secrets, e.g. API keys): name -> path. They are
	// re-read when the file changes and never logged. They win over Headers
	// and job headers.
	HeaderFiles map[string]string `json:"headerFiles,omitempty"`
	// ForwardHeaders are the request-routing override headers
	// (X-Forwarded-*, Forwarded, X-Original-URL, X-Rewrite-URL,
	// X-HTTP-Method-Override, ...) that jobs may pass to the upstream. By
	// default every such header is dropped.
	ForwardHeaders []string `json:"forwardHeaders,omitempty"`
	// RateLimit bounds the rate of upstream calls of one worker (retries
	// included); nil means unlimited.
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// HTTP2 is when calls use HTTP/2: "auto" (or empty) when an https://
	// upstream offers it in the TLS handshake (ALPN), HTTP/1.1 otherwise;
	// "always" for HTTP/2 only, also to an http:// upstream (h2c with prior
	// knowledge: the upstream must speak HTTP/2 without TLS); "never" for
	// HTTP/1.1 only. HTTP/2 multiplexes the calls on few connections
	// instead of one connection (two goroutines and two buffers) per call
	// in flight.
	HTTP2 string `json:"http2,omitempty"`
}

// Values of Upstream.HTTP2.
const (
	HTTP2Auto   = "auto"
	HTTP2Always = "always"
	HTTP2Never  = "never"
)

// RateLimit is a token bucket.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate.
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	// Burst is the bucket size (default: max(1, ceil(RequestsPerSecond))).
	Burst int `json:"burst,omitempty"`
}

// OAuth holds OAuth2 client-credentials settings. Credentials are read from files and
// re-read when they change.
type OAuth struct {
	TokenURL         string              `json:"tokenURL"`
	ClientIDFile     string              `json:"clientIDFile"`
	ClientSecretFile string              `json:"clientSecretFile"`
	Scopes           []string            `json:"scopes,omitempty"`
	EndpointParams   map[string][]string `json:"endpointParams,omitempty"`
	// AuthStyle is "header" (HTTP basic), "params" (form body) or "" (auto-detect).
	AuthStyle string `json:"authStyle,omitempty"`
	// AllowInsecureHTTP permits an http:// TokenURL (the client secret then
	// travels in clear text; for tests only).
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`
}

// Concurrency bounds what one replica holds.
type Concurrency struct {
	MaxInFlight int   `json:"maxInFlight"`
	MaxBytes    int64 `json:"maxBytes"`
}

// Timeouts of the data plane.
type Timeouts struct {
	Request       metav1.Duration `json:"request"`
	ChunkAssembly metav1.Duration `json:"chunkAssembly"`
	// Drain is how long a stopping worker waits, past the request timeout,
	// for the answers of its in-flight jobs to be acknowledged.
	Drain metav1.Duration `json:"drain"`
	// HandoverLease is how long the next owner of a partition waits for a
	// job handed over with the partition before running it itself, unless
	// the worker running it renews the lease (every third of it) or reports
	// it answered.
	HandoverLease metav1.Duration `json:"handoverLease,omitempty"`
}

// Retries of upstream calls.
type Retries struct {
	// Attempts is the total number of tries (1 = no retry).
	Attempts   int             `json:"attempts"`
	Backoff    metav1.Duration `json:"backoff"`
	MaxBackoff metav1.Duration `json:"maxBackoff"`
	// OnStatuses are upstream HTTP statuses that are retried.
	OnStatuses []int `json:"onStatuses,omitempty"`
	// OnConnectionErrors retries when the upstream could not be reached.
	OnConnectionErrors bool `json:"onConnectionErrors"`
	// NonIdempotent also retries POST and PATCH (the Idempotency-Key header
	// lets the upstream deduplicate).
	NonIdempotent bool `json:"nonIdempotent,omitempty"`
	// MaxRetryAfter caps the wait a 429 or 503 answer asks for in
	// Retry-After; a longer wait is not retried (the answer is returned).
	MaxRetryAfter metav1.Duration `json:"maxRetryAfter,omitempty"`
}

// Default returns a configuration with the same defaults as the CRD.
func Default() Config {
	return Config{
		Kafka: Kafka{
			InitialOffset: "earliest", MaxMessageBytes: 900 * 1024,
			SessionTimeout:    metav1.Duration{Duration: 10 * time.Second},
			HeartbeatInterval: metav1.Duration{Duration: 500 * time.Millisecond},
			RebalanceProtocol: RebalanceCooperative,
		},
		Upstream: Upstream{
			MaxRequestBytes:  64 << 20,
			MaxResponseBytes: 64 << 20,
		},
		Concurrency: Concurrency{MaxInFlight: 100, MaxBytes: 512 << 20},
		Timeouts: Timeouts{
			Request:       metav1.Duration{Duration: 15 * time.Minute},
			ChunkAssembly: metav1.Duration{Duration: 2 * time.Minute},
			Drain:         metav1.Duration{Duration: 60 * time.Second},
			HandoverLease: metav1.Duration{Duration: 15 * time.Second},
		},
		Retries: Retries{
			Attempts:           3,
			Backoff:            metav1.Duration{Duration: 200 * time.Millisecond},
			MaxBackoff:         metav1.Duration{Duration: 10 * time.Second},
			OnStatuses:         []int{429, 502, 503, 504},
			OnConnectionErrors: true,
			MaxRetryAfter:      metav1.Duration{Duration: 60 * time.Second},
		},
	}
}

// Load reads a YAML or JSON file over Default() and validates it.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data)
}

// Parse decodes YAML or JSON over Default() and validates the result.
func Parse(data []byte) (Config, error) {
	c := Default()
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Marshal renders the configuration as YAML.
func (c Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

// Validate reports every problem found, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	if c.Kafka.ConsumerGroup == "" {
		bad("kafka.consumerGroup", "required")
	}
	switch c.Kafka.InitialOffset {
	case "", "earliest", "latest":
	default:
		bad("kafka.initialOffset", "must be earliest or latest, not %q", c.Kafka.InitialOffset)
	}
	if c.Kafka.MaxMessageBytes < 1024 {
		bad("kafka.maxMessageBytes", "must be at least 1024")
	}
	if st, hb := c.Kafka.SessionTimeout.Duration, c.Kafka.HeartbeatInterval.Duration; st < 6*time.Second || st > 5*time.Minute {
		bad("kafka.sessionTimeout", "must be between 6s and 5m (the broker's group.min/max.session.timeout.ms defaults)")
	} else if hb <= 0 || hb*3 > st {
		bad("kafka.heartbeatInterval", "must be positive and at most a third of kafka.sessionTimeout (%s)", st)
	}
	switch c.Kafka.RebalanceProtocol {
	case RebalanceCooperative, RebalanceEager:
	default:
		bad("kafka.rebalanceProtocol", "must be %s or %s, not %q", RebalanceCooperative, RebalanceEager, c.Kafka.RebalanceProtocol)
	}
	if s := c.Kafka.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			bad("kafka.sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", s.Mechanism)
		}
		if s.UsernameFile == "" || s.PasswordFile == "" {
			bad("kafka.sasl", "usernameFile and passwordFile are required")
		}
	}
	if c.Topics.Requests == "" {
		bad("topics.requests", "required")
	}
	if c.Topics.Replies == "" {
		bad("topics.replies", "required")
	}
	for i, t := range c.Topics.AllowedReplyTopics {
		if t == "" {
			bad(fmt.Sprintf("topics.allowedReplyTopics[%d]", i), "must not be empty")
		}
	}
	for i, t := range c.Topics.AllowedReplyTopicPrefixes {
		if t == "" {
			bad(fmt.Sprintf("topics.allowedReplyTopicPrefixes[%d]", i), "must not be empty (it would allow every topic)")
		}
	}
	if u, err := url.Parse(c.Upstream.BaseURL); err != nil || u.Host == "" {
		bad("upstream.baseURL", "must be an absolute URL, got %q", c.Upstream.BaseURL)
	} else {
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && c.Upstream.AllowInsecureHTTP:
		case u.Scheme == "http":
			bad("upstream.baseURL", "http is refused unless allowInsecureHTTP is set")
		default:
			bad("upstream.baseURL", "scheme must be https (or http when allowed), got %q", u.Scheme)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			bad("upstream.baseURL", "must not carry user info, query or fragment")
		}
	}
	if c.Upstream.MaxRequestBytes <= 0 {
		bad("upstream.maxRequestBytes", "must be positive")
	}
	if c.Upstream.MaxResponseBytes <= 0 {
		bad("upstream.maxResponseBytes", "must be positive")
	}
	for name, path := range c.Upstream.HeaderFiles {
		if path == "" {
			bad("upstream.headerFiles["+name+"]", "path required")
		}
	}
	switch c.Upstream.HTTP2 {
	case "", HTTP2Auto, HTTP2Always, HTTP2Never:
	default:
		bad("upstream.http2", "must be %s, %s or %s, not %q", HTTP2Auto, HTTP2Always, HTTP2Never, c.Upstream.HTTP2)
	}
	if r := c.Upstream.RateLimit; r != nil && (r.RequestsPerSecond <= 0 || r.Burst < 0) {
		bad("upstream.rateLimit", "requestsPerSecond must be positive and burst not negative")
	}
	if o := c.OAuth; o != nil {
		if u, err := url.Parse(o.TokenURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad("oauth.tokenURL", "must be an absolute http(s) URL, got %q", o.TokenURL)
		} else if u.Scheme == "http" && !o.AllowInsecureHTTP {
			bad("oauth.tokenURL", "http is refused unless oauth.allowInsecureHTTP is set (the client secret would travel in clear text)")
		}
		if o.ClientIDFile == "" || o.ClientSecretFile == "" {
			bad("oauth", "clientIDFile and clientSecretFile are required")
		}
		for k := range o.EndpointParams {
			switch {
			case k == "client_id" || k == "client_secret" || k == "grant_type":
				bad("oauth.endpointParams", "%s is set by the portal from the credential files", k)
			case k == "scope" && len(o.Scopes) > 0:
				bad("oauth.endpointParams", "scope conflicts with oauth.scopes")
			}
		}
		for name := range c.Upstream.Headers {
			if strings.EqualFold(name, "Authorization") {
				bad("upstream.headers", "Authorization conflicts with oauth")
			}
		}
		for name := range c.Upstream.HeaderFiles {
			if strings.EqualFold(name, "Authorization") {
				bad("upstream.headerFiles", "Authorization conflicts with oauth")
			}
		}
		switch strings.ToLower(o.AuthStyle) {
		case "", "header", "params":
		default:
			bad("oauth.authStyle", "must be header or params, not %q", o.AuthStyle)
		}
	}
	if c.Concurrency.MaxInFlight < 1 {
		bad("concurrency.maxInFlight", "must be at least 1")
	}
	if c.Concurrency.MaxBytes < c.Upstream.MaxRequestBytes {
		bad("concurrency.maxBytes", "must be at least upstream.maxRequestBytes (%d)", c.Upstream.MaxRequestBytes)
	}
	for name, d := range map[string]time.Duration{
		"timeouts.request": c.Timeouts.Request.Duration, "timeouts.chunkAssembly": c.Timeouts.ChunkAssembly.Duration,
		"timeouts.drain": c.Timeouts.Drain.Duration, "timeouts.handoverLease": c.Timeouts.HandoverLease.Duration,
	} {
		if d <= 0 {
			bad(name, "must be positive")
		}
	}
	if c.Retries.Attempts < 1 {
		bad("retries.attempts", "must be at least 1")
	}
	if c.Retries.Backoff.Duration < 0 || c.Retries.MaxBackoff.Duration < c.Retries.Backoff.Duration {
		bad("retries", "need 0 <= backoff <= maxBackoff")
	}
	if c.Retries.MaxRetryAfter.Duration < 0 {
		bad("retries.maxRetryAfter", "must not be negative")
	}
	return errors.Join(errs...)
}
