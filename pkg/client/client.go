package client

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/pkg/wire"
)

// Defaults of Config.
const (
	DefaultMaxMessageBytes  = 900 * 1024
	DefaultTimeout          = 30 * time.Second
	DefaultMaxRequestBytes  = 64 << 20
	DefaultMaxResponseBytes = 64 << 20
	DefaultMaxHeldBytes     = 256 << 20
)

// Config of a Client. Brokers, RequestsTopic and ReplyTopic are required.
type Config struct {
	// Brokers are bootstrap addresses (host:port).
	Brokers []string
	// RequestsTopic is the topic the portal consumes.
	RequestsTopic string
	// ReplyTopic is where this client reads answers; normally the pipeline's
	// default reply topic.
	ReplyTopic string
	// ReplyPartition is the partition of ReplyTopic this instance claims.
	// Instances that share a reply topic must each use their own partition.
	ReplyPartition int32
	// ResumeOffset is where Await starts scanning the reply partition for a
	// job this instance did not send: sarama.OffsetOldest (the default, when
	// 0 is given) or an offset recorded from ReplyOffset of an earlier
	// instance.
	ResumeOffset int64

	// Version is the Kafka protocol version (e.g. "3.7.0"); empty means
	// 2.1.0, the oldest that Kafka 4 brokers accept.
	Version string
	// ClientID names the client in broker logs and quotas.
	ClientID string
	// TLS, when set, enables TLS to the brokers.
	TLS *TLS
	// SASL, when set, enables SASL authentication.
	SASL *SASL

	// MaxMessageBytes bounds each produced chunk record (default 900 KiB,
	// as the portal's); it must not exceed the broker's message.max.bytes.
	MaxMessageBytes int
	// Timeout is the job deadline used when the caller's context has none
	// (default 30s).
	Timeout time.Duration
	// MaxRequestBytes bounds a request body (default 64 MiB).
	MaxRequestBytes int64
	// MaxResponseBytes bounds one response payload; larger ones are dropped
	// and reported as too_large (default 64 MiB).
	MaxResponseBytes int64
	// MaxHeldBytes bounds the bytes of partial responses being assembled plus
	// complete responses not yet claimed by Await (default 256 MiB); the
	// oldest are dropped beyond it and counted in Stats.Evicted.
	MaxHeldBytes int64

	// ConfigureSarama, when set, adjusts the sarama configuration last.
	ConfigureSarama func(*sarama.Config)
}

// TLS settings for the Kafka connection. PEM bytes take precedence over
// files of the same item.
type TLS struct {
	// CA verifies the brokers; empty means the system roots.
	CA, Cert, Key []byte
	// CAFile, CertFile and KeyFile are read when the bytes are empty.
	CAFile, CertFile, KeyFile string
}

// SASL settings for the Kafka connection.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	// Username and Password, or files holding them.
	Username, Password         string
	UsernameFile, PasswordFile string
}

// Stats are counters of one Client since New.
type Stats struct {
	// Sent is the number of jobs produced and acknowledged by Kafka.
	Sent int64
	// Delivered is the number of responses matched to a job of this client.
	Delivered int64
	// Unmatched is the number of responses for job IDs this client was not
	// waiting for (late, repeated, or another instance's): dropped.
	Unmatched int64
	// Malformed is the number of reply records or payloads that could not
	// be decoded: dropped.
	Malformed int64
	// Evicted is the number of partial or unclaimed responses dropped to
	// stay within MaxHeldBytes or MaxResponseBytes.
	Evicted int64
}

// Client sends jobs and receives their answers. It is safe for concurrent
// use. Close it when done.
type Client struct {
	cfg Config
	// kc serves the consumers, pkc the producer: a produce request must not
	// queue behind a long-polling fetch on a shared broker connection.
	kc       sarama.Client
	pkc      sarama.Client
	producer sarama.SyncProducer
	consumer sarama.Consumer
	pc       sarama.PartitionConsumer
	start    int64 // first offset the live consumer reads
	rr       atomic.Uint32

	recv *receiver

	closeOnce sync.Once
	stopped   chan struct{}
	wg        sync.WaitGroup
}

// New connects to Kafka, starts reading the reply partition at its newest
// offset, and returns a Client.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sc, err := saramaConfig(cfg)
	if err != nil {
		return nil, err
	}
	kc, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to Kafka %v: %w", cfg.Brokers, err)
	}
	pkc, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		_ = kc.Close()
		return nil, fmt.Errorf("connecting to Kafka %v: %w", cfg.Brokers, err)
	}
	c := &Client{cfg: cfg, kc: kc, pkc: pkc, stopped: make(chan struct{})}
	if err := c.init(); err != nil {
		_ = c.closeKafka()
		return nil, err
	}
	return c, nil
}

func (c *Client) init() error {
	cfg := c.cfg
	parts, err := c.kc.Partitions(cfg.ReplyTopic)
	if err != nil {
		return fmt.Errorf("reading partitions of reply topic %s: %w", cfg.ReplyTopic, err)
	}
	if int(cfg.ReplyPartition) >= len(parts) {
		return fmt.Errorf("reply partition %d does not exist: topic %s has %d partitions", cfg.ReplyPartition, cfg.ReplyTopic, len(parts))
	}
	if _, err := c.pkc.Partitions(cfg.RequestsTopic); err != nil {
		return fmt.Errorf("reading partitions of requests topic %s: %w", cfg.RequestsTopic, err)
	}
	c.recv = newReceiver(cfg.MaxHeldBytes, cfg.MaxResponseBytes)
	if c.producer, err = sarama.NewSyncProducerFromClient(c.pkc); err != nil {
		return fmt.Errorf("creating producer: %w", err)
	}
	if c.consumer, err = sarama.NewConsumerFromClient(c.kc); err != nil {
		return fmt.Errorf("creating consumer: %w", err)
	}
	if c.start, err = c.kc.GetOffset(cfg.ReplyTopic, cfg.ReplyPartition, sarama.OffsetNewest); err != nil {
		return fmt.Errorf("reading newest offset of %s/%d: %w", cfg.ReplyTopic, cfg.ReplyPartition, err)
	}
	if c.pc, err = c.consumer.ConsumePartition(cfg.ReplyTopic, cfg.ReplyPartition, c.start); err != nil {
		return fmt.Errorf("consuming %s/%d: %w", cfg.ReplyTopic, cfg.ReplyPartition, err)
	}
	c.wg.Add(3)
	go c.consume()
	go c.consumeErrors()
	go c.janitor()
	return nil
}

func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if cfg.RequestsTopic == "" {
		errs = append(errs, errors.New("requests topic: required"))
	}
	if cfg.ReplyTopic == "" {
		errs = append(errs, errors.New("reply topic: required"))
	} else if _, err := wire.EncodeRequest(&wire.Request{Method: "GET", ReplyTopic: cfg.ReplyTopic, ReplyPartition: wire.NoPartition}); err != nil {
		errs = append(errs, fmt.Errorf("reply topic: %w", err))
	}
	if cfg.ReplyPartition < 0 {
		errs = append(errs, fmt.Errorf("reply partition: %d is negative", cfg.ReplyPartition))
	}
	if cfg.ResumeOffset == 0 {
		cfg.ResumeOffset = sarama.OffsetOldest
	}
	if cfg.ResumeOffset < sarama.OffsetOldest {
		errs = append(errs, fmt.Errorf("resume offset: %d is not an offset", cfg.ResumeOffset))
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxMessageBytes < 1024 {
		errs = append(errs, fmt.Errorf("max message bytes: %d is below 1024", cfg.MaxMessageBytes))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxHeldBytes == 0 {
		cfg.MaxHeldBytes = DefaultMaxHeldBytes
	}
	if cfg.Timeout < 0 || cfg.MaxRequestBytes < 0 || cfg.MaxResponseBytes < 0 || cfg.MaxHeldBytes < 0 {
		errs = append(errs, errors.New("timeout and byte limits must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("client config: %w", err)
	}
	return cfg, nil
}

// saramaConfig builds an idempotent producer and a partition consumer
// configuration with the connection settings of cfg.
func saramaConfig(cfg Config) (*sarama.Config, error) {
	o := kafkaconf.Options{Version: cfg.Version, ClientID: cfg.ClientID}
	var cr kafkaconf.Credentials
	var err error
	if cfg.TLS != nil || cfg.SASL != nil {
		var caF, certF, keyF, userF, pwF string
		if t := cfg.TLS; t != nil {
			o.TLS = true
			caF, certF, keyF = fileUnless(t.CA, t.CAFile), fileUnless(t.Cert, t.CertFile), fileUnless(t.Key, t.KeyFile)
		}
		if s := cfg.SASL; s != nil {
			o.SASLMechanism = s.Mechanism
			userF, pwF = fileUnless([]byte(s.Username), s.UsernameFile), fileUnless([]byte(s.Password), s.PasswordFile)
		}
		if cr, err = kafkaconf.ReadFileCredentials(caF, certF, keyF, userF, pwF); err != nil {
			return nil, fmt.Errorf("kafka credentials: %w", err)
		}
		if t := cfg.TLS; t != nil {
			cr.CA, cr.Cert, cr.Key = orBytes(t.CA, cr.CA), orBytes(t.Cert, cr.Cert), orBytes(t.Key, cr.Key)
		}
		if s := cfg.SASL; s != nil {
			cr.Username, cr.Password = orString(s.Username, cr.Username), orString(s.Password, cr.Password)
		}
	}
	sc, err := kafkaconf.New(o, cr)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if sc.ClientID == "sarama" {
		sc.ClientID = "kafkasend-client"
	}
	kafkaconf.ChunkProducer(sc, cfg.MaxMessageBytes)
	sc.Consumer.Return.Errors = true
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Fetch.Default = 1 << 20
	sc.Metadata.Retry.Backoff = 100 * time.Millisecond
	if cfg.ConfigureSarama != nil {
		cfg.ConfigureSarama(sc)
	}
	return sc, nil
}

func fileUnless(b []byte, file string) string {
	if len(b) > 0 {
		return ""
	}
	return file
}

func orBytes(a, b []byte) []byte {
	if len(a) > 0 {
		return a
	}
	return b
}

func orString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ReplyOffset is the offset of the reply partition this client started
// reading at: every answer to a job it sends is at or after it. Record it
// with kept job IDs to let a later instance's Await scan less
// (Config.ResumeOffset).
func (c *Client) ReplyOffset() int64 { return c.start }

// ReplyPartition is the partition of the reply topic this client reads.
func (c *Client) ReplyPartition() int32 { return c.cfg.ReplyPartition }

// Stats returns the client's counters.
func (c *Client) Stats() Stats { return c.recv.stats() }

// Close stops reading answers and closes the Kafka connections. Calls
// waiting in Do or Await return an error.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.stopped)
		c.pc.AsyncClose()
		c.wg.Wait()
		c.recv.closeAll()
		err = c.closeKafka()
	})
	return err
}

func (c *Client) closeKafka() error {
	var errs []error
	if c.consumer != nil {
		errs = append(errs, c.consumer.Close())
	}
	if c.producer != nil {
		errs = append(errs, c.producer.Close())
	}
	for _, kc := range []sarama.Client{c.kc, c.pkc} {
		if !kc.Closed() {
			errs = append(errs, kc.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing Kafka client: %w", err)
	}
	return nil
}

// consume feeds the live reply stream to the receiver.
func (c *Client) consume() {
	defer c.wg.Done()
	for m := range c.pc.Messages() {
		c.recv.ingest(m)
	}
}

func (c *Client) consumeErrors() {
	defer c.wg.Done()
	// sarama retries fetch errors by itself; they are drained so that the
	// consumer never blocks on them.
	for range c.pc.Errors() {
	}
}

// janitor drops waiters whose job deadline passed long ago.
func (c *Client) janitor() {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stopped:
			return
		case now := <-t.C:
			c.recv.expire(now)
		}
	}
}
