package wire

import (
	"fmt"

	"github.com/IBM/sarama"
)

// ProducerMessages returns one sarama message per chunk, in chunk order:
// key = job ID, value = chunk data (not copied), headers = ChunkHeaders.
// With partition NoPartition the messages' Partition is -1 and the
// producer's partitioner places them by key, so all chunks of a job land in
// one partition. Any other partition is honoured only by a partitioner that
// reads ProducerMessage.Partition: NewPartitioner, or sarama's manual one.
// Produce the messages of a job in order through one producer (an
// idempotent producer keeps that order across retries).
func ProducerMessages(topic string, partition int32, chunks []Chunk) []*sarama.ProducerMessage {
	msgs := make([]*sarama.ProducerMessage, len(chunks))
	backing := make([]sarama.ProducerMessage, len(chunks))
	for i, c := range chunks {
		m := &backing[i]
		m.Topic = topic
		m.Partition = partition
		m.Key = sarama.StringEncoder(c.JobID)
		m.Value = sarama.ByteEncoder(c.Data)
		m.Headers = ChunkHeaders(c)
		msgs[i] = m
	}
	return msgs
}

// RequestMessages encodes r, splits it for maxMessageBytes and returns its
// producer messages for topic (see ProducerMessages). The key is r.ID.
func RequestMessages(topic string, partition int32, r *Request, maxMessageBytes int) ([]*sarama.ProducerMessage, error) {
	if r == nil {
		return nil, malformed("request", "nil request")
	}
	payload, err := EncodeRequest(r)
	if err != nil {
		return nil, fmt.Errorf("encoding request %s: %w", r.ID, err)
	}
	chunks, err := Split(r.ID, TypeRequest, payload, maxMessageBytes)
	if err != nil {
		return nil, fmt.Errorf("splitting request %s: %w", r.ID, err)
	}
	return ProducerMessages(topic, partition, chunks), nil
}

// ResponseMessages encodes r, splits it for maxMessageBytes and returns its
// producer messages for topic (see ProducerMessages). The key is r.ID. The
// messages alias r.Body rather than copy it: a large response is held once.
func ResponseMessages(topic string, partition int32, r *Response, maxMessageBytes int) ([]*sarama.ProducerMessage, error) {
	if r == nil {
		return nil, malformed("response", "nil response")
	}
	head, err := responseHead(r)
	if err != nil {
		return nil, fmt.Errorf("encoding response %s: %w", r.ID, err)
	}
	chunks, err := splitParts(r.ID, TypeResponse, head, r.Body, maxMessageBytes)
	if err != nil {
		return nil, fmt.Errorf("splitting response %s: %w", r.ID, err)
	}
	return ProducerMessages(topic, partition, chunks), nil
}

// NewPartitioner is a sarama.PartitionerConstructor for producers of
// ProducerMessages' output: a message whose Partition is 0 or more goes to
// that partition, one whose Partition is negative (NoPartition) is placed by
// sarama's hash partitioner on its key. Note that a ProducerMessage built by
// hand has Partition 0 unless set.
func NewPartitioner(topic string) sarama.Partitioner {
	return &partitioner{hash: sarama.NewHashPartitioner(topic)}
}

type partitioner struct{ hash sarama.Partitioner }

// Partition implements sarama.Partitioner.
func (p *partitioner) Partition(m *sarama.ProducerMessage, numPartitions int32) (int32, error) {
	if m.Partition < 0 {
		return p.hash.Partition(m, numPartitions)
	}
	if m.Partition >= numPartitions {
		return 0, fmt.Errorf("partition %d requested, topic %s has %d: %w", m.Partition, m.Topic, numPartitions, sarama.ErrInvalidPartition)
	}
	return m.Partition, nil
}

// RequiresConsistency implements sarama.Partitioner: the choice is fixed by
// the message, so it must be respected.
func (p *partitioner) RequiresConsistency() bool { return true }
