package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InitialOffset says where a consumer group with no committed offset starts.
// +kubebuilder:validation:Enum=Earliest;Latest
type InitialOffset string

// Initial offset policies.
const (
	InitialOffsetEarliest InitialOffset = "Earliest"
	InitialOffsetLatest   InitialOffset = "Latest"
)

// SASLMechanism is a Kafka SASL mechanism.
// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
type SASLMechanism string

// Supported SASL mechanisms.
const (
	SASLPlain       SASLMechanism = "PLAIN"
	SASLSCRAMSHA256 SASLMechanism = "SCRAM-SHA-256"
	SASLSCRAMSHA512 SASLMechanism = "SCRAM-SHA-512"
)

// OAuthAuthStyle says how the client credentials reach the token endpoint.
// +kubebuilder:validation:Enum=Auto;Header;Params
type OAuthAuthStyle string

// OAuth2 client authentication styles.
const (
	OAuthAuthStyleAuto   OAuthAuthStyle = "Auto"
	OAuthAuthStyleHeader OAuthAuthStyle = "Header"
	OAuthAuthStyleParams OAuthAuthStyle = "Params"
)

// SecretKeyRef names one key of a Secret in the pipeline's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// TLSCertSecretRef names a Secret holding a client certificate and its key.
type TLSCertSecretRef struct {
	// Name of the Secret (typically of type kubernetes.io/tls).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// CertKey is the key holding the PEM certificate chain.
	// +optional
	// +kubebuilder:default="tls.crt"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	CertKey string `json:"certKey,omitempty"`
	// KeyKey is the key holding the PEM private key.
	// +optional
	// +kubebuilder:default="tls.key"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	KeyKey string `json:"keyKey,omitempty"`
}

// KafkaTLSSpec enables TLS to the brokers.
type KafkaTLSSpec struct {
	// CASecretRef is a PEM CA bundle used to verify the brokers; the system
	// roots are used when unset.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`
	// ClientCertSecretRef enables mutual TLS with this client certificate.
	// +optional
	ClientCertSecretRef *TLSCertSecretRef `json:"clientCertSecretRef,omitempty"`
}

// KafkaSASLSpec enables SASL authentication to the brokers. A Strimzi
// KafkaUser Secret holds the password under "password"; its user name is the
// KafkaUser's name: set username to it.
// +kubebuilder:validation:XValidation:rule="has(self.username) != has(self.usernameSecretRef)",message="kafka.sasl needs exactly one of username and usernameSecretRef"
type KafkaSASLSpec struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	// +required
	Mechanism SASLMechanism `json:"mechanism"`
	// Username is the user name, when it is not kept in a Secret.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[^\r\n\x00]+$`
	Username string `json:"username,omitempty"`
	// UsernameSecretRef is the key holding the user name.
	// +optional
	UsernameSecretRef *SecretKeyRef `json:"usernameSecretRef,omitempty"`
	// PasswordSecretRef is the key holding the password.
	// +required
	PasswordSecretRef SecretKeyRef `json:"passwordSecretRef"`
}

// KafkaSpec says how to reach the Kafka cluster and which group to consume in.
// +kubebuilder:validation:XValidation:rule="!has(self.sessionTimeout) || !has(self.heartbeatInterval) || duration(self.heartbeatInterval) + duration(self.heartbeatInterval) + duration(self.heartbeatInterval) <= duration(self.sessionTimeout)",message="kafka.heartbeatInterval must be at most a third of kafka.sessionTimeout",fieldPath=".heartbeatInterval"
type KafkaSpec struct {
	// BootstrapServers are host:port pairs of the Kafka brokers.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:Pattern=`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}$`
	// +listType=atomic
	BootstrapServers []string `json:"bootstrapServers"`
	// ConsumerGroup is the consumer group of the workers. Defaults to
	// "kafkasend.<namespace>.<name>".
	// +optional
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	ConsumerGroup string `json:"consumerGroup,omitempty"`
	// InitialOffset is where a consumer group with no committed offset starts
	// reading the requests topic.
	// +optional
	// +kubebuilder:default=Earliest
	InitialOffset InitialOffset `json:"initialOffset,omitempty"`
	// Version is the Kafka protocol version the workers speak, e.g. "3.7.0",
	// at least 2.1.0 (Kafka 4 brokers refuse older clients). Defaults to
	// 2.1.0, which every broker from 2.1 on accepts.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(2\.[1-9][0-9]*\.[0-9]+|([3-9]|[1-9][0-9]+)\.[0-9]+\.[0-9]+)$`
	Version string `json:"version,omitempty"`
	// MaxMessageBytes bounds every record a worker produces (one response
	// chunk with its key and headers). Keep it under the brokers' and the
	// topic's message.max.bytes.
	// +optional
	// +kubebuilder:default=921600
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=104857600
	MaxMessageBytes int32 `json:"maxMessageBytes,omitempty"`
	// TLS to the brokers.
	// +optional
	TLS *KafkaTLSSpec `json:"tls,omitempty"`
	// SASL authentication to the brokers.
	// +optional
	SASL *KafkaSASLSpec `json:"sasl,omitempty"`
	// SessionTimeout is the consumer group session timeout: how long the
	// group waits for a silent worker (killed, partitioned) before giving
	// its partitions to the others.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('6s') && duration(self) <= duration('5m')",message="must be between 6s and 5m (the brokers' default group.min/max.session.timeout.ms)"
	SessionTimeout *metav1.Duration `json:"sessionTimeout,omitempty"`
	// HeartbeatInterval is how often a worker heartbeats to the group
	// coordinator; at most a third of sessionTimeout.
	// +optional
	// +kubebuilder:default="500ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('100s')",message="must be between 100ms and 100s"
	HeartbeatInterval *metav1.Duration `json:"heartbeatInterval,omitempty"`
	// RebalanceProtocol is Cooperative (KIP-429: only the partitions that
	// move are revoked; in-flight jobs are handed over) or Eager (every
	// partition is revoked at each membership change). Eager is the first
	// step of moving a group that still runs eager workers; see
	// docs/scaling.md.
	// +optional
	// +kubebuilder:default=Cooperative
	RebalanceProtocol RebalanceProtocol `json:"rebalanceProtocol,omitempty"`
}

// RebalanceProtocol is the consumer group rebalance protocol of the workers.
// +kubebuilder:validation:Enum=Cooperative;Eager
type RebalanceProtocol string

// Rebalance protocols.
const (
	RebalanceCooperative RebalanceProtocol = "Cooperative"
	RebalanceEager       RebalanceProtocol = "Eager"
)

// TopicsSpec names the topics a pipeline reads and writes.
// +kubebuilder:validation:XValidation:rule="self.requests != self.replies",message="topics.replies must differ from topics.requests"
// +kubebuilder:validation:XValidation:rule="!has(self.deadLetter) || (self.deadLetter != self.requests && self.deadLetter != self.replies)",message="topics.deadLetter must differ from topics.requests and topics.replies"
type TopicsSpec struct {
	// Requests is the topic jobs arrive on.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	Requests string `json:"requests"`
	// Replies is the default topic for responses, used when a job names none.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	Replies string `json:"replies"`
	// DeadLetter receives messages that cannot be tied to any job, with a
	// reason header. Such messages are counted and skipped when unset.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	DeadLetter string `json:"deadLetter,omitempty"`
	// AllowedReplyTopics are topics, besides replies, that a job may name
	// as its reply topic. A job naming any other topic is answered with a
	// policy error on the replies topic.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=249
	// +kubebuilder:validation:items:Pattern=`^[a-zA-Z0-9._-]+$`
	// +listType=set
	AllowedReplyTopics []string `json:"allowedReplyTopics,omitempty"`
	// AllowedReplyTopicPrefixes allow every reply topic that starts with one
	// of them (e.g. "orders.replies." for one reply topic per requester).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=249
	// +kubebuilder:validation:items:Pattern=`^[a-zA-Z0-9._-]+$`
	// +listType=set
	AllowedReplyTopicPrefixes []string `json:"allowedReplyTopicPrefixes,omitempty"`
}

// UpstreamSpec is the one HTTP API that jobs of this pipeline may call.
// +kubebuilder:validation:XValidation:rule="isURL(self.baseURL) && size(url(self.baseURL).getHostname()) > 0",message="upstream.baseURL must be an absolute URL with a host",fieldPath=".baseURL"
// +kubebuilder:validation:XValidation:rule="!isURL(self.baseURL) || url(self.baseURL).getScheme() == 'https' || (url(self.baseURL).getScheme() == 'http' && has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="upstream.baseURL must use https, or http with allowInsecureHTTP: true",fieldPath=".baseURL"
// +kubebuilder:validation:XValidation:rule="!isURL(self.baseURL) || (size(url(self.baseURL).getQuery()) == 0 && !self.baseURL.contains('#') && !self.baseURL.contains('@'))",message="upstream.baseURL must not carry user info, a query or a fragment",fieldPath=".baseURL"
// +kubebuilder:validation:XValidation:rule="!has(self.caSecretRef) || !isURL(self.baseURL) || url(self.baseURL).getScheme() == 'https'",message="upstream.caSecretRef needs an https baseURL",fieldPath=".caSecretRef"
type UpstreamSpec struct {
	// BaseURL fixes the scheme, host, port and base path of every call; jobs
	// choose only the path below it, the query, headers and body.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	BaseURL string `json:"baseURL"`
	// AllowInsecureHTTP permits an http:// base URL (plain text; for tests and
	// in-cluster upstreams behind a mesh).
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`
	// CASecretRef is a PEM CA bundle that verifies the upstream (and the
	// token endpoint), in addition to the system roots.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`
	// MaxRequestBytes caps a job's request body.
	// +optional
	// +kubebuilder:default="64Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('1Gi')) <= 0",message="must be more than 0 and at most 1Gi"
	MaxRequestBytes *resource.Quantity `json:"maxRequestBytes,omitempty"`
	// MaxResponseBytes caps the upstream's response body.
	// +optional
	// +kubebuilder:default="64Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('1Gi')) <= 0",message="must be more than 0 and at most 1Gi"
	MaxResponseBytes *resource.Quantity `json:"maxResponseBytes,omitempty"`
	// Headers are added to every upstream call and win over job headers.
	// Each has a value or, for API keys and other secrets, a value read
	// from a Secret key (mounted into the workers, re-read when the Secret
	// changes, never copied into the ConfigMap or logged).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",message="header names must be unique (case-insensitively)"
	// +listType=map
	// +listMapKey=name
	Headers []UpstreamHeader `json:"headers,omitempty"`
	// FollowRedirects follows redirects that stay on the base URL's origin and
	// under its path; redirects elsewhere are refused. Off by default: a 3xx
	// is returned to the requester as is.
	// +optional
	FollowRedirects bool `json:"followRedirects,omitempty"`
	// ForwardHeaders are request-routing override headers (Forwarded,
	// X-Forwarded-*, X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override,
	// ...) that jobs may pass to the upstream. Every other such header is
	// dropped.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9!#$%&*+.^_|~-]{1,128}$`
	// +listType=set
	ForwardHeaders []string `json:"forwardHeaders,omitempty"`
	// RateLimit bounds the rate of upstream calls of each worker replica,
	// retries included.
	// +optional
	RateLimit *RateLimitSpec `json:"rateLimit,omitempty"`
	// HTTP2 is when upstream calls use HTTP/2: Auto (when an https://
	// upstream offers it in the TLS handshake, else HTTP/1.1), Always
	// (HTTP/2 only; to an http:// upstream without TLS, with prior
	// knowledge (h2c), so the upstream must speak it) or Never (HTTP/1.1
	// only). HTTP/2 multiplexes the calls in flight on a few connections
	// instead of holding one connection per call. The token endpoint is
	// not affected.
	// +optional
	// +kubebuilder:default=Auto
	HTTP2 UpstreamHTTP2 `json:"http2,omitempty"`
}

// UpstreamHTTP2 is when upstream calls use HTTP/2.
// +kubebuilder:validation:Enum=Auto;Always;Never
type UpstreamHTTP2 string

// HTTP/2 modes of upstream calls.
const (
	UpstreamHTTP2Auto   UpstreamHTTP2 = "Auto"
	UpstreamHTTP2Always UpstreamHTTP2 = "Always"
	UpstreamHTTP2Never  UpstreamHTTP2 = "Never"
)

// UpstreamHeader is one header added to every upstream call.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="a header needs exactly one of value and valueFrom"
// +kubebuilder:validation:XValidation:rule="!(self.name.lowerAscii() in ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection', 'idempotency-key', 'traceparent'])",message="Host, Content-Length, hop-by-hop, Idempotency-Key and traceparent headers are set by the portal",fieldPath=".name"
type UpstreamHeader struct {
	// Name of the header.
	// +required
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&*+.^_|~-]{1,128}$`
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`
	// Value is a single-line header value.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^[^\r\n\x00]*$`
	Value *string `json:"value,omitempty"`
	// ValueFrom reads the value from a Secret key.
	// +optional
	ValueFrom *HeaderValueSource `json:"valueFrom,omitempty"`
}

// HeaderValueSource is where a header value comes from.
type HeaderValueSource struct {
	// SecretKeyRef is a key of a Secret in the pipeline's namespace.
	// +required
	SecretKeyRef SecretKeyRef `json:"secretKeyRef"`
}

// RateLimitSpec is a token bucket.
type RateLimitSpec struct {
	// RequestsPerSecond is the sustained rate; a quantity, so "500m" is one
	// call every two seconds.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('100k')) <= 0",message="must be more than 0 and at most 100k"
	RequestsPerSecond resource.Quantity `json:"requestsPerSecond"`
	// Burst is how many calls may start at once after a quiet spell;
	// defaults to the rate rounded up (at least 1).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	Burst int32 `json:"burst,omitempty"`
}

// OAuthSpec configures OAuth2 client credentials for upstream calls.
// +kubebuilder:validation:XValidation:rule="isURL(self.tokenURL) && url(self.tokenURL).getScheme() in ['https', 'http'] && size(url(self.tokenURL).getHostname()) > 0",message="oauth.tokenURL must be an absolute http(s) URL",fieldPath=".tokenURL"
// +kubebuilder:validation:XValidation:rule="!isURL(self.tokenURL) || url(self.tokenURL).getScheme() != 'http' || (has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="oauth.tokenURL must use https, or http with oauth.allowInsecureHTTP: true (the client secret would travel in clear text)",fieldPath=".tokenURL"
// +kubebuilder:validation:XValidation:rule="!has(self.endpointParams) || !has(self.scopes) || size(self.scopes) == 0 || !('scope' in self.endpointParams)",message="oauth.endpointParams.scope conflicts with oauth.scopes",fieldPath=".endpointParams"
type OAuthSpec struct {
	// TokenURL is the token endpoint.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	TokenURL string `json:"tokenURL"`
	// ClientIDSecretRef is the Secret key holding the client ID.
	// +required
	ClientIDSecretRef SecretKeyRef `json:"clientIDSecretRef"`
	// ClientSecretSecretRef is the Secret key holding the client secret.
	// +required
	ClientSecretSecretRef SecretKeyRef `json:"clientSecretSecretRef"`
	// Scopes requested with the token.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	Scopes []string `json:"scopes,omitempty"`
	// Audience, when set, is sent as the "audience" parameter.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Audience string `json:"audience,omitempty"`
	// EndpointParams are extra form parameters sent to the token endpoint.
	// The client credentials come from the Secrets only.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['client_id', 'client_secret', 'grant_type']))",message="client_id, client_secret and grant_type are set by the portal"
	EndpointParams map[string]string `json:"endpointParams,omitempty"`
	// AuthStyle says how the client authenticates to the token endpoint.
	// +optional
	// +kubebuilder:default=Auto
	AuthStyle OAuthAuthStyle `json:"authStyle,omitempty"`
	// AllowInsecureHTTP permits an http:// tokenURL. The client secret then
	// travels in clear text: for tests only.
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`
}

// ConcurrencySpec bounds the work each worker replica holds at once.
type ConcurrencySpec struct {
	// MaxInFlight is the number of concurrent upstream calls per replica.
	// When reached, the replica stops fetching until a call finishes.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	MaxInFlight int32 `json:"maxInFlight,omitempty"`
	// MaxBytes caps the request bytes a replica holds (partial and in-flight
	// jobs). When reached, the replica stops fetching until bytes are freed.
	// +optional
	// +kubebuilder:default="512Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(self).compareTo(quantity('1Mi')) >= 0 && quantity(self).compareTo(quantity('64Gi')) <= 0",message="must be between 1Mi and 64Gi"
	MaxBytes *resource.Quantity `json:"maxBytes,omitempty"`
}

// TimeoutsSpec holds the data plane's timeouts.
type TimeoutsSpec struct {
	// Request bounds each upstream call, retries included; a job's own
	// deadline shortens it.
	// +optional
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="must be between 1s and 24h"
	Request *metav1.Duration `json:"request,omitempty"`
	// ChunkAssembly is how long a partial job waits for its missing chunks
	// before it is answered with an "incomplete" error.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="must be between 1s and 24h"
	ChunkAssembly *metav1.Duration `json:"chunkAssembly,omitempty"`
	// Drain is how long a stopping worker waits, past the request timeout,
	// for the answers of its in-flight jobs to be acknowledged. The pods'
	// terminationGracePeriodSeconds is request + drain + 15s.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('2h')",message="must be between 1s and 2h"
	Drain *metav1.Duration `json:"drain,omitempty"`
	// HandoverLease is how long the next owner of a partition waits for a
	// job handed over with it (still running on the previous owner) before
	// running it itself, unless the previous owner renews the lease or
	// reports the job answered.
	// +optional
	// +kubebuilder:default="15s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('3s') && duration(self) <= duration('1h')",message="must be between 3s and 1h"
	HandoverLease *metav1.Duration `json:"handoverLease,omitempty"`
}

// RetriesSpec says which failed upstream calls are tried again.
// +kubebuilder:validation:XValidation:rule="!has(self.backoff) || !has(self.maxBackoff) || duration(self.maxBackoff) >= duration(self.backoff)",message="retries.maxBackoff must be at least retries.backoff",fieldPath=".maxBackoff"
type RetriesSpec struct {
	// Attempts is the total number of tries, the first included.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Attempts int32 `json:"attempts,omitempty"`
	// Backoff is the wait before the first retry; it doubles each time.
	// +optional
	// +kubebuilder:default="200ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('10m')",message="must be between 0s and 10m"
	Backoff *metav1.Duration `json:"backoff,omitempty"`
	// MaxBackoff caps the wait between tries.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="must be between 0s and 1h"
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`
	// OnStatuses are upstream HTTP statuses that are retried.
	// +optional
	// +kubebuilder:default={429,502,503,504}
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:Minimum=400
	// +kubebuilder:validation:items:Maximum=599
	// +listType=set
	OnStatuses []int32 `json:"onStatuses,omitempty"`
	// OnConnectionErrors retries calls that could not reach the upstream.
	// +optional
	// +kubebuilder:default=true
	OnConnectionErrors *bool `json:"onConnectionErrors,omitempty"`
	// NonIdempotent also retries POST and PATCH calls. The job ID travels
	// as the Idempotency-Key header so that the upstream can deduplicate.
	// +optional
	NonIdempotent bool `json:"nonIdempotent,omitempty"`
	// MaxRetryAfter caps the wait a 429 or 503 answer asks for in its
	// Retry-After header; an answer asking for longer is returned as is.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="must be between 0s and 1h"
	MaxRetryAfter *metav1.Duration `json:"maxRetryAfter,omitempty"`
}

// ScalingMode says who sets the worker count.
// +kubebuilder:validation:Enum=Lag;Manual;KEDA
type ScalingMode string

// Scaling modes.
const (
	// ScalingLag: the operator's autoscaler sizes the workers from the jobs
	// waiting and in flight, and writes spec.replicas.
	ScalingLag ScalingMode = "Lag"
	// ScalingManual: spec.replicas is the user's (kubectl scale); nothing
	// overwrites it.
	ScalingManual ScalingMode = "Manual"
	// ScalingKEDA: the operator renders a KEDA ScaledObject that targets the
	// pipeline's scale subresource; KEDA sets spec.replicas.
	ScalingKEDA ScalingMode = "KEDA"
)

// ScalingSpec configures how the worker count is set.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.maxReplicas >= self.minReplicas",message="scaling.maxReplicas must be at least scaling.minReplicas",fieldPath=".maxReplicas"
type ScalingSpec struct {
	// Mode is Lag (the built-in autoscaler), Manual (spec.replicas as set,
	// e.g. by kubectl scale) or KEDA (a ScaledObject drives the scale
	// subresource). See docs/scaling.md.
	// +optional
	// +kubebuilder:default=Lag
	Mode ScalingMode `json:"mode,omitempty"`
	// MinReplicas is the fewest worker pods; 0 lets an idle pipeline scale
	// to zero.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the most worker pods. More replicas than the requests
	// topic has partitions would sit idle, so the autoscaler also stops there.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxReplicas int32 `json:"maxReplicas,omitempty"`
	// TargetBacklogPerReplica is how many jobs waiting or in flight one
	// replica is meant to carry: desired replicas = ceil(backlog / target).
	// Defaults to concurrency.maxInFlight (a replica's capacity).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000
	TargetBacklogPerReplica *int64 `json:"targetBacklogPerReplica,omitempty"`
	// ActivationBacklog is the backlog above which a pipeline scaled to
	// zero gets its first replica.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000000
	ActivationBacklog int64 `json:"activationBacklog,omitempty"`
	// PollInterval is how often the backlog is measured.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="must be between 1s and 1h"
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`
	// ScaleDownStabilizationWindow is how long the desired count must stay
	// lower before replicas are removed; scaling up is immediate.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="must be between 0s and 24h"
	ScaleDownStabilizationWindow *metav1.Duration `json:"scaleDownStabilizationWindow,omitempty"`
}

// WorkerSpec shapes the worker pods.
type WorkerSpec struct {
	// Image of the portal worker; defaults to the operator's configured image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// ImagePullPolicy of the worker container.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// ImagePullSecrets for the worker image.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// Resources of the worker container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// LogLevel of the worker.
	// +optional
	// +kubebuilder:default=info
	// +kubebuilder:validation:Enum=debug;info;warn;error
	LogLevel string `json:"logLevel,omitempty"`
	// NodeSelector of the worker pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations of the worker pods.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Affinity of the worker pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// TopologySpreadConstraints of the worker pods.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// PriorityClassName of the worker pods.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// PodLabels are added to the worker pods.
	// +optional
	PodLabels map[string]string `json:"podLabels,omitempty"`
	// PodAnnotations are added to the worker pods.
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`
}

// PortalPipelineSpec is the desired state of a REST-over-Kafka portal.
// +kubebuilder:validation:XValidation:rule="!has(self.concurrency.maxBytes) || !has(self.upstream.maxRequestBytes) || quantity(self.concurrency.maxBytes).compareTo(quantity(self.upstream.maxRequestBytes)) >= 0",message="concurrency.maxBytes must be at least upstream.maxRequestBytes (a replica must be able to hold one whole job)",fieldPath=".concurrency.maxBytes"
// +kubebuilder:validation:XValidation:rule="!has(self.oauth) || !has(self.upstream.headers) || self.upstream.headers.all(h, h.name.lowerAscii() != 'authorization')",message="an Authorization header conflicts with oauth",fieldPath=".upstream.headers"
type PortalPipelineSpec struct {
	// Kafka connection and consumer group.
	// +required
	Kafka KafkaSpec `json:"kafka"`
	// Topics read and written.
	// +required
	Topics TopicsSpec `json:"topics"`
	// Upstream is the HTTP API the jobs call.
	// +required
	Upstream UpstreamSpec `json:"upstream"`
	// OAuth, when set, authenticates upstream calls with an OAuth2
	// client-credentials token.
	// +optional
	OAuth *OAuthSpec `json:"oauth,omitempty"`
	// Concurrency and memory limits per replica.
	// +optional
	// +kubebuilder:default={}
	Concurrency ConcurrencySpec `json:"concurrency,omitempty"`
	// Timeouts of the data plane.
	// +optional
	// +kubebuilder:default={}
	Timeouts TimeoutsSpec `json:"timeouts,omitempty"`
	// Retries of upstream calls.
	// +optional
	// +kubebuilder:default={}
	Retries RetriesSpec `json:"retries,omitempty"`
	// Scaling says who sets the worker count, and the autoscaler's bounds.
	// +optional
	// +kubebuilder:default={}
	Scaling ScalingSpec `json:"scaling,omitempty"`
	// Replicas is the number of worker pods. In scaling mode Manual it is
	// the user's (`kubectl scale` sets it); in Lag mode the autoscaler
	// writes it within [scaling.minReplicas, scaling.maxReplicas], as a
	// HorizontalPodAutoscaler would; in KEDA mode KEDA writes it.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Replicas *int32 `json:"replicas,omitempty"`
	// Worker pod settings.
	// +optional
	// +kubebuilder:default={}
	Worker WorkerSpec `json:"worker,omitempty"`
}

// PortalPipelineStatus is the observed state of a PortalPipeline.
type PortalPipelineStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Progressing, Degraded and KafkaReachable.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Replicas is the number of worker pods.
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the number of available worker pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// DesiredReplicas is what the controller asks the Deployment for.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// ConsumerLag is the group's offset lag on the requests topic at
	// LagTime (records between the committed offsets and the log ends,
	// answered ones included); unset until first measured.
	// +optional
	ConsumerLag *int64 `json:"consumerLag,omitempty"`
	// Backlog is the number of unanswered records at LagTime: waiting to be
	// consumed or in flight (the consumer lag minus the records already
	// answered above the commit points). The autoscaler sizes on it.
	// +optional
	Backlog *int64 `json:"backlog,omitempty"`
	// Unconsumed is the part of Backlog past the highest offset the group
	// has reported on: records not yet read by any worker.
	// +optional
	Unconsumed *int64 `json:"unconsumed,omitempty"`
	// HandedOver is the part of Backlog running on a worker that handed its
	// partition over (jobs under a lease).
	// +optional
	HandedOver *int64 `json:"handedOver,omitempty"`
	// EstimatedDrainTime is the backlog divided by the answer rate seen
	// between the last two measurements; unset while nothing is answered.
	// +optional
	EstimatedDrainTime *metav1.Duration `json:"estimatedDrainTime,omitempty"`
	// LagTime is when ConsumerLag and Backlog were measured.
	// +optional
	LagTime *metav1.Time `json:"lagTime,omitempty"`
	// Partitions of the requests topic, as last seen.
	// +optional
	Partitions int32 `json:"partitions,omitempty"`
	// ConsumerGroup is the effective consumer group.
	// +optional
	ConsumerGroup string `json:"consumerGroup,omitempty"`
	// ScalingMode is the scaling mode last put in force (a ScaledObject
	// exists while it is KEDA).
	// +optional
	ScalingMode ScalingMode `json:"scalingMode,omitempty"`
	// LastScaleTime is when the desired replica count last changed.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// Selector selects the worker pods (for the scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
}

// PortalPipeline runs a REST-over-Kafka portal: worker pods that consume
// chunked HTTP jobs from a requests topic, call one upstream API with bounded
// concurrency, and produce each response to a reply topic.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=pp;portal,categories=kafkasend
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`,priority=1
// +kubebuilder:printcolumn:name="Backlog",type=integer,JSONPath=`.status.backlog`
// +kubebuilder:printcolumn:name="Lag",type=integer,JSONPath=`.status.consumerLag`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.scaling.mode`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PortalPipeline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec PortalPipelineSpec `json:"spec"`
	// +optional
	Status PortalPipelineStatus `json:"status,omitempty"`
}

// PortalPipelineList is a list of PortalPipelines.
// +kubebuilder:object:root=true
type PortalPipelineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PortalPipeline `json:"items"`
}
