// Package lag measures the work a consumer group has waiting on a topic.
//
// The portal commits a partition only up to its oldest unanswered job and
// lists, in the commit metadata, the answered offsets above that point and
// the jobs still running on a worker that handed the partition over
// (internal/portal/offsets). So the offset lag (log end minus committed
// offset) overstates the work: one long call at the bottom of a partition
// under a stream of fast, answered jobs shows thousands of records of lag.
// Measure reads the metadata and reports, per partition and in total, the
// offset lag, the backlog (records neither answered nor skipped: waiting or
// in flight), the handed-over jobs and the records not yet read.
package lag

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/portal/offsets"
)

// Partition is one partition's measurement.
type Partition struct {
	Partition int32
	// End is the log-end offset; Committed the group's committed offset
	// (the log start when the group has none and reads from the earliest).
	End, Committed int64
	// Lag is End - Committed.
	Lag int64
	// Answered are offsets at or above Committed already answered (listed
	// in the commit metadata).
	Answered int64
	// HandedOver are offsets still running on a worker that handed the
	// partition over (under a lease).
	HandedOver int64
	// Backlog is Lag - Answered: records waiting or in flight.
	Backlog int64
	// Unconsumed are the records past the highest offset the metadata
	// names (or past Committed without metadata): not yet read by a worker
	// as far as the group has told.
	Unconsumed int64
	// MetadataErr is set when the commit metadata could not be read; the
	// partition then counts its whole lag as backlog.
	MetadataErr error
}

// Result is one measurement of a group on a topic.
type Result struct {
	// Partitions is the topic's partition count.
	Partitions int32
	// Sums over the partitions.
	Lag, Answered, HandedOver, Backlog, Unconsumed int64
	// Settled counts the records of the topic that are behind the group:
	// committed or answered above the commit point. Its growth between two
	// measurements is the group's answer rate.
	Settled int64
	// PerPartition, by partition number.
	PerPartition []Partition
}

// Measure reads the group's committed offsets and metadata and the topic's
// log-end offsets through client. A partition with no commit counts from
// the log start when fromEarliest is true (the group will read it all) and
// as empty otherwise (the group will start at the end).
func Measure(ctx context.Context, client sarama.Client, group, topic string, fromEarliest bool) (Result, error) {
	if err := client.RefreshMetadata(topic); err != nil {
		return Result{}, fmt.Errorf("reading metadata of topic %s: %w", topic, err)
	}
	partitions, err := client.Partitions(topic)
	if err != nil {
		return Result{}, fmt.Errorf("listing partitions of topic %s: %w", topic, err)
	}
	sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
	admin, err := sarama.NewClusterAdminFromClient(noCloseClient{client})
	if err != nil {
		return Result{}, fmt.Errorf("creating admin client: %w", err)
	}
	defer admin.Close()

	type commit struct {
		offset   int64
		metadata string
	}
	committed := make(map[int32]commit, len(partitions))
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: partitions})
	switch {
	case errors.Is(err, sarama.ErrGroupIDNotFound):
		// Some brokers answer this for a group with no commits yet.
	case err != nil:
		return Result{}, fmt.Errorf("reading offsets of group %s: %w", group, err)
	default:
		if !errors.Is(resp.Err, sarama.ErrNoError) && !errors.Is(resp.Err, sarama.ErrGroupIDNotFound) {
			return Result{}, fmt.Errorf("reading offsets of group %s: %w", group, resp.Err)
		}
		for _, p := range partitions {
			if b := resp.GetBlock(topic, p); b != nil && errors.Is(b.Err, sarama.ErrNoError) && b.Offset >= 0 {
				committed[p] = commit{b.Offset, b.Metadata}
			}
		}
	}

	res := Result{Partitions: int32(len(partitions)), PerPartition: make([]Partition, 0, len(partitions))}
	for _, p := range partitions {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return Result{}, fmt.Errorf("reading end offset of %s/%d: %w", topic, p, err)
		}
		c, ok := committed[p]
		if !ok {
			if !fromEarliest {
				res.PerPartition = append(res.PerPartition, Partition{Partition: p, End: end, Committed: end})
				res.Settled += end
				continue
			}
			start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
			if err != nil {
				return Result{}, fmt.Errorf("reading start offset of %s/%d: %w", topic, p, err)
			}
			c = commit{offset: start}
		}
		pm := Of(p, end, c.offset, c.metadata)
		res.PerPartition = append(res.PerPartition, pm)
		res.Lag += pm.Lag
		res.Answered += pm.Answered
		res.HandedOver += pm.HandedOver
		res.Backlog += pm.Backlog
		res.Unconsumed += pm.Unconsumed
		res.Settled += pm.Committed + pm.Answered
	}
	return res, nil
}

// Of computes one partition's figures from its log end and its commit.
func Of(partition int32, end, committed int64, metadata string) Partition {
	pm := Partition{Partition: partition, End: end, Committed: committed, Lag: max(end-committed, 0)}
	highest := committed - 1
	if md, err := offsets.DecodeCommit(committed, metadata); err != nil {
		if !errors.Is(err, offsets.ErrForeignMetadata) {
			pm.MetadataErr = err
		}
	} else {
		for _, r := range md.Done {
			// Count only what lies below the log end (a damaged or
			// stale record cannot make the backlog negative).
			if r.First >= end {
				break
			}
			last := min(r.Last, end-1)
			pm.Answered += last - r.First + 1
			highest = max(highest, last)
		}
		for _, l := range md.Leases {
			for _, r := range l.Offsets {
				if r.First >= end {
					continue
				}
				last := min(r.Last, end-1)
				pm.HandedOver += last - r.First + 1
				highest = max(highest, last)
			}
		}
	}
	pm.Answered = min(pm.Answered, pm.Lag)
	pm.Backlog = pm.Lag - pm.Answered
	pm.HandedOver = min(pm.HandedOver, pm.Backlog)
	pm.Unconsumed = min(max(end-(highest+1), 0), pm.Backlog)
	return pm
}

// noCloseClient keeps the admin's Close from closing the shared client.
type noCloseClient struct{ sarama.Client }

func (noCloseClient) Close() error { return nil }
