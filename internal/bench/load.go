package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/wire"
)

// sender produces jobs through one idempotent asynchronous producer (the
// way a requester does) and records when each job was submitted.
type sender struct {
	producer        sarama.AsyncProducer
	topic           string
	maxMessageBytes int

	mu        sync.Mutex
	submitted map[string]time.Time
	order     []string
	firstErr  error
	failed    atomic.Int64
	errsDone  chan struct{}
}

func producerConfig(maxMessageBytes int) *sarama.Config {
	c := saramaConfig()
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 10
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Successes = false
	c.Producer.Return.Errors = true
	c.Producer.Partitioner = wire.NewPartitioner
	c.Producer.MaxMessageBytes = maxMessageBytes + 4096
	return c
}

func newSender(brokers []string, topic string, maxMessageBytes int) (*sender, error) {
	p, err := sarama.NewAsyncProducer(brokers, producerConfig(maxMessageBytes))
	if err != nil {
		return nil, fmt.Errorf("creating the load producer: %w", err)
	}
	s := &sender{producer: p, topic: topic, maxMessageBytes: maxMessageBytes,
		submitted: map[string]time.Time{}, errsDone: make(chan struct{})}
	go func() {
		defer close(s.errsDone)
		for e := range p.Errors() {
			s.failed.Add(1)
			s.mu.Lock()
			if s.firstErr == nil {
				s.firstErr = fmt.Errorf("producing a request chunk: %w", e.Err)
			}
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// send encodes req and hands its chunks to the producer; the job's
// submission time is now.
func (s *sender) send(ctx context.Context, req *wire.Request) error {
	msgs, err := wire.RequestMessages(s.topic, wire.NoPartition, req, s.maxMessageBytes)
	if err != nil {
		return fmt.Errorf("encoding job %s: %w", req.ID, err)
	}
	now := time.Now()
	s.mu.Lock()
	s.submitted[req.ID] = now
	s.order = append(s.order, req.ID)
	s.mu.Unlock()
	for _, m := range msgs {
		select {
		case s.producer.Input() <- m:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// close flushes the producer and reports the first produce error.
func (s *sender) close() error {
	s.producer.AsyncClose()
	<-s.errsDone
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstErr
}

// jobs returns the submission times by job ID and the IDs in order.
func (s *sender) jobs() (map[string]time.Time, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submitted, s.order
}

// arrival is one complete answer read from the reply topic.
type arrival struct {
	At     time.Time
	Status int
	Kind   wire.ErrorKind
	Bytes  int
}

// collector reads every partition of a reply topic, reassembles answers
// and records when each arrived and which jobs were answered twice.
type collector struct {
	consumer  sarama.Consumer
	client    sarama.Client
	pcs       []sarama.PartitionConsumer
	closeOnce sync.Once
	wg        sync.WaitGroup
	// decode: answers are response payloads (a portal's); otherwise any
	// payload with a valid checksum counts (the echo relay's).
	decode bool

	mu         sync.Mutex
	partial    map[string][]wire.Chunk
	arrived    map[string]arrival
	duplicates int
	errs       []error
	changed    chan struct{}
}

func newCollector(brokers []string, topic string, decode bool) (*collector, error) {
	c := saramaConfig()
	c.Consumer.MaxWaitTime = 50 * time.Millisecond
	client, err := sarama.NewClient(brokers, c)
	if err != nil {
		return nil, fmt.Errorf("connecting the reply consumer: %w", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("creating the reply consumer: %w", err)
	}
	col := &collector{consumer: consumer, client: client, decode: decode, partial: map[string][]wire.Chunk{},
		arrived: map[string]arrival{}, changed: make(chan struct{}, 1)}
	parts, err := consumer.Partitions(topic)
	if err != nil {
		col.close()
		return nil, fmt.Errorf("listing the partitions of %s: %w", topic, err)
	}
	for _, part := range parts {
		pc, err := consumePartition(client, consumer, topic, part)
		if err != nil {
			col.close()
			return nil, err
		}
		col.pcs = append(col.pcs, pc)
		col.wg.Add(2)
		go func() {
			defer col.wg.Done()
			for m := range pc.Messages() {
				col.add(m)
			}
		}()
		go func() {
			defer col.wg.Done()
			for e := range pc.Errors() {
				col.mu.Lock()
				col.errs = append(col.errs, e)
				col.mu.Unlock()
			}
		}()
	}
	return col, nil
}

// consumePartition starts consuming a new topic's partition from the
// start, retrying for a while: a broker may still be taking leadership of a
// partition that metadata already shows.
func consumePartition(client sarama.Client, consumer sarama.Consumer, topic string, part int32) (sarama.PartitionConsumer, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		pc, err := consumer.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err == nil {
			return pc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("consuming %s/%d: %w", topic, part, err)
		}
		time.Sleep(100 * time.Millisecond)
		_ = client.RefreshMetadata(topic)
	}
}

func (c *collector) add(m *sarama.ConsumerMessage) {
	now := time.Now()
	ch, err := wire.ParseChunk(m.Key, m.Headers, m.Value)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("reply at offset %d: %w", m.Offset, err))
		return
	}
	var payload []byte
	if ch.Count == 1 {
		payload = ch.Data
		if err := wire.VerifyChecksum(payload, ch.Checksum); err != nil {
			c.errs = append(c.errs, fmt.Errorf("job %s: %w", ch.JobID, err))
			return
		}
	} else {
		parts := c.partial[ch.JobID]
		if parts == nil {
			parts = make([]wire.Chunk, ch.Count)
			c.partial[ch.JobID] = parts
		}
		if ch.Index >= len(parts) {
			c.errs = append(c.errs, fmt.Errorf("job %s: chunk %d of %d", ch.JobID, ch.Index, len(parts)))
			return
		}
		ch.Data = append([]byte(nil), ch.Data...)
		parts[ch.Index] = ch
		for _, p := range parts {
			if p.Count == 0 {
				return // still incomplete
			}
		}
		delete(c.partial, ch.JobID)
		if payload, err = wire.Join(parts); err != nil {
			c.errs = append(c.errs, fmt.Errorf("job %s: %w", ch.JobID, err))
			return
		}
	}
	a := arrival{At: now, Bytes: len(payload)}
	if c.decode {
		resp, err := wire.DecodeResponse(payload)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("job %s: %w", ch.JobID, err))
			return
		}
		a.Status, a.Kind, a.Bytes = resp.Status, resp.ErrorKind, len(resp.Body)
	}
	if _, seen := c.arrived[ch.JobID]; seen {
		c.duplicates++
		return
	}
	c.arrived[ch.JobID] = a
}

func (c *collector) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitFor returns when every job in ids has an answer, ctx ends or timeout
// passes.
func (c *collector) waitFor(ctx context.Context, ids []string, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := 0
	for {
		c.mu.Lock()
		for next < len(ids) {
			if _, ok := c.arrived[ids[next]]; !ok {
				break
			}
			next++
		}
		c.mu.Unlock()
		if next == len(ids) {
			return
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// count returns how many jobs were answered.
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.arrived)
}

// results returns the answers, the number of repeated answers and the
// reply records that could not be read.
func (c *collector) results() (map[string]arrival, int, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arrived, c.duplicates, append([]error(nil), c.errs...)
}

func (c *collector) close() {
	c.closeOnce.Do(c.doClose)
}

func (c *collector) doClose() {
	for _, pc := range c.pcs {
		pc.AsyncClose()
	}
	c.wg.Wait()
	err := errors.Join(c.consumer.Close(), c.client.Close())
	if err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		c.mu.Lock()
		c.errs = append(c.errs, fmt.Errorf("closing the reply consumer: %w", err))
		c.mu.Unlock()
	}
}
