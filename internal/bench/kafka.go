package bench

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker kinds reported in results.
const (
	BrokerKafka = "kafka"
	BrokerKfake = "kfake"
)

// cluster is the Kafka cluster a run talks to: a real one (--brokers) or an
// in-process kfake cluster (--embedded).
type cluster struct {
	kind    string
	brokers []string
	fake    *kfake.Cluster
	admin   sarama.ClusterAdmin
	topics  []string
}

// clientVersion is the protocol version of the bench's own clients: Apache
// Kafka 4.x and kfake both accept it.
var clientVersion = sarama.V4_0_0_0

// saramaConfig is the base configuration of every bench client.
func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "kafkasend-bench"
	c.Version = clientVersion
	c.Net.DialTimeout = 5 * time.Second
	c.Admin.Timeout = 30 * time.Second
	c.Metadata.Retry.Max = 20
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.MaxWaitTime = 100 * time.Millisecond
	return c
}

// openCluster connects to brokers, or starts kfake when brokers is empty.
func openCluster(brokers []string) (*cluster, error) {
	c := &cluster{kind: BrokerKafka, brokers: brokers}
	if len(brokers) == 0 {
		f, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, fmt.Errorf("starting kfake: %w", err)
		}
		c.kind, c.fake, c.brokers = BrokerKfake, f, f.ListenAddrs()
	}
	admin, err := sarama.NewClusterAdmin(c.brokers, saramaConfig())
	if err != nil {
		c.close()
		return nil, fmt.Errorf("connecting to Kafka at %v: %w", c.brokers, err)
	}
	c.admin = admin
	return c, nil
}

// createTopic creates a topic with a unique name starting with prefix and
// waits until every partition has a leader. close deletes it.
func (c *cluster) createTopic(prefix string, partitions int32, configs map[string]string) (string, error) {
	var suffix [5]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails
	name := fmt.Sprintf("kafkasend-bench-%s-%x", prefix, suffix)
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}
	if len(configs) > 0 {
		detail.ConfigEntries = map[string]*string{}
		for k, v := range configs {
			detail.ConfigEntries[k] = &v
		}
	}
	if err := c.admin.CreateTopic(name, detail, false); err != nil {
		return "", fmt.Errorf("creating topic %s: %w", name, err)
	}
	c.topics = append(c.topics, name)
	if err := c.waitForLeaders(name, int(partitions)); err != nil {
		return "", err
	}
	return name, nil
}

func (c *cluster) waitForLeaders(topic string, partitions int) error {
	client, err := sarama.NewClient(c.brokers, saramaConfig())
	if err != nil {
		return fmt.Errorf("connecting to Kafka: %w", err)
	}
	defer client.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := client.RefreshMetadata(topic)
		var ids []int32
		if err == nil {
			ids, err = client.Partitions(topic)
		}
		if err == nil && len(ids) == partitions {
			for _, p := range ids {
				if _, err = client.Leader(topic, p); err != nil {
					break
				}
			}
			if err == nil {
				return nil
			}
		}
		if err == nil {
			err = fmt.Errorf("%d of %d partitions visible", len(ids), partitions)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for the leaders of topic %s: %w", topic, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// close deletes the topics it created and stops kfake.
func (c *cluster) close() error {
	var errs []error
	if c.admin != nil {
		for _, t := range c.topics {
			if err := c.admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				errs = append(errs, fmt.Errorf("deleting topic %s: %w", t, err))
			}
		}
		if err := c.admin.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing Kafka admin: %w", err))
		}
	}
	if c.fake != nil {
		c.fake.Close()
	}
	return errors.Join(errs...)
}

// deleteGroup removes a consumer group the run created (best effort: a real
// broker refuses while members are still leaving).
func (c *cluster) deleteGroup(group string) {
	if c.admin != nil {
		_ = c.admin.DeleteConsumerGroup(group)
	}
}
