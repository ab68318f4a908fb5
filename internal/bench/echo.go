package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/wire"
)

// echoRelay is the ceiling for any portal on a broker: a consumer group
// member that reads the requests topic and produces every record unchanged
// (key, headers, value) to the reply topic, with no HTTP call and no
// reassembly. Its consumer and producer settings are the portal's.
type echoRelay struct {
	group    sarama.ConsumerGroup
	producer sarama.AsyncProducer
	replies  string
	ready    chan struct{}
	once     sync.Once
	cancel   context.CancelFunc
	done     chan struct{}

	mu  sync.Mutex
	err error
}

func startEchoRelay(ctx context.Context, brokers []string, group, requests, replies string, maxMessageBytes int) (*echoRelay, error) {
	pc := producerConfig(maxMessageBytes)
	// The portal's batching: up to 1 MiB or 1 ms.
	pc.Producer.Flush.Bytes = 1 << 20
	pc.Producer.Flush.Frequency = time.Millisecond
	producer, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		return nil, fmt.Errorf("creating the echo producer: %w", err)
	}
	cc := saramaConfig()
	cc.Consumer.Offsets.AutoCommit.Enable = true
	cc.Consumer.Offsets.AutoCommit.Interval = time.Second
	cc.Consumer.Group.Session.Timeout = 10 * time.Second
	cc.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	cc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	cc.Consumer.Fetch.Default = 1 << 20
	g, err := sarama.NewConsumerGroup(brokers, group, cc)
	if err != nil {
		_ = producer.Close()
		return nil, fmt.Errorf("creating the echo consumer group: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	e := &echoRelay{group: g, producer: producer, replies: replies, ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		for pe := range producer.Errors() {
			e.fail(fmt.Errorf("echo produce: %w", pe.Err))
		}
	}()
	go func() {
		for ge := range g.Errors() {
			e.fail(fmt.Errorf("echo consumer group: %w", ge))
		}
	}()
	go func() {
		defer close(e.done)
		for rctx.Err() == nil {
			if err := g.Consume(rctx, []string{requests}, e); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) || rctx.Err() != nil {
					return
				}
				e.fail(err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-e.ready:
		return e, nil
	case <-time.After(60 * time.Second):
		_ = e.close()
		return nil, errors.New("echo relay did not join its group within 60s")
	}
}

func (e *echoRelay) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
}

// Setup implements sarama.ConsumerGroupHandler.
func (e *echoRelay) Setup(sarama.ConsumerGroupSession) error {
	e.once.Do(func() { close(e.ready) })
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler.
func (e *echoRelay) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim implements sarama.ConsumerGroupHandler: relay each record.
func (e *echoRelay) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			headers := make([]sarama.RecordHeader, len(m.Headers))
			for i, h := range m.Headers {
				headers[i] = *h
			}
			pm := &sarama.ProducerMessage{Topic: e.replies, Partition: wire.NoPartition,
				Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(m.Value), Headers: headers}
			select {
			case e.producer.Input() <- pm:
			case <-s.Context().Done():
				return nil
			}
			s.MarkMessage(m, "")
		case <-s.Context().Done():
			return nil
		}
	}
}

// close leaves the group and flushes the producer.
func (e *echoRelay) close() error {
	e.cancel()
	errs := []error{e.group.Close()}
	<-e.done
	errs = append(errs, e.producer.Close())
	e.mu.Lock()
	errs = append(errs, e.err)
	e.mu.Unlock()
	return errors.Join(errs...)
}
