// Package lag measures a consumer group's lag on a topic: for each
// partition, the log-end offset minus the group's committed offset.
package lag

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// Result is one measurement.
type Result struct {
	// Total is the sum of the partitions' lags.
	Total int64
	// Partitions is the topic's partition count.
	Partitions int32
	// PerPartition maps a partition to its lag.
	PerPartition map[int32]int64
}

// Measure reads the group's committed offsets and the topic's log-end
// offsets through client. A partition with no commit counts from the log
// start when fromEarliest is true (the group will read it all) and as 0
// otherwise (the group will start at the end).
func Measure(ctx context.Context, client sarama.Client, group, topic string, fromEarliest bool) (Result, error) {
	if err := client.RefreshMetadata(topic); err != nil {
		return Result{}, fmt.Errorf("reading metadata of topic %s: %w", topic, err)
	}
	partitions, err := client.Partitions(topic)
	if err != nil {
		return Result{}, fmt.Errorf("listing partitions of topic %s: %w", topic, err)
	}
	admin, err := sarama.NewClusterAdminFromClient(noCloseClient{client})
	if err != nil {
		return Result{}, fmt.Errorf("creating admin client: %w", err)
	}
	defer admin.Close()

	committed := make(map[int32]int64, len(partitions))
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: partitions})
	switch {
	case errors.Is(err, sarama.ErrGroupIDNotFound):
		// Some brokers answer this for a group with no commits yet.
	case err != nil:
		return Result{}, fmt.Errorf("reading offsets of group %s: %w", group, err)
	default:
		if resp.Err != sarama.ErrNoError && resp.Err != sarama.ErrGroupIDNotFound {
			return Result{}, fmt.Errorf("reading offsets of group %s: %w", group, resp.Err)
		}
		for _, p := range partitions {
			if b := resp.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError {
				committed[p] = b.Offset
			}
		}
	}

	res := Result{Partitions: int32(len(partitions)), PerPartition: make(map[int32]int64, len(partitions))}
	for _, p := range partitions {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return Result{}, fmt.Errorf("reading end offset of %s/%d: %w", topic, p, err)
		}
		c, ok := committed[p]
		if !ok || c < 0 {
			if !fromEarliest {
				res.PerPartition[p] = 0
				continue
			}
			if c, err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
				return Result{}, fmt.Errorf("reading start offset of %s/%d: %w", topic, p, err)
			}
		}
		l := max(end-c, 0)
		res.PerPartition[p] = l
		res.Total += l
	}
	return res, nil
}

// noCloseClient keeps the admin's Close from closing the shared client.
type noCloseClient struct{ sarama.Client }

func (noCloseClient) Close() error { return nil }
