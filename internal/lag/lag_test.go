package lag

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"kafkasend.io/kafkasend/internal/portal/offsets"
)

func TestOfCountsAnsweredAndHandedOverJobs(t *testing.T) {
	lease := offsets.Lease{Holder: "w-1", Expires: time.Now().Add(time.Minute), Offsets: []offsets.Range{{First: 110, Last: 111}}}
	cases := []struct {
		name                                     string
		end, committed                           int64
		commit                                   offsets.Commit
		lag, answered, handedOver, backlog, unrd int64
	}{
		// One long call at 100, 20,000 fast jobs answered behind it.
		{"long call under answered jobs", 20_101, 100, offsets.Commit{Done: []offsets.Range{{First: 101, Last: 20_100}}},
			20_001, 20_000, 0, 1, 0},
		{"no metadata: all lag is backlog", 150, 100, offsets.Commit{}, 50, 0, 0, 50, 50},
		{"answered with gaps and a lease, records not yet read", 130, 100,
			offsets.Commit{Done: []offsets.Range{{First: 101, Last: 105}, {First: 112, Last: 119}}, Leases: []offsets.Lease{lease}},
			30, 13, 2, 17, 10},
		{"metadata past the log end is capped", 105, 100, offsets.Commit{Done: []offsets.Range{{First: 101, Last: 200}}},
			5, 4, 0, 1, 0},
		{"nothing waiting", 100, 100, offsets.Commit{}, 0, 0, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			md, dropped := offsets.EncodeCommit(tc.committed, tc.commit)
			if dropped != 0 {
				t.Fatalf("metadata dropped %d offsets", dropped)
			}
			p := Of(0, tc.end, tc.committed, md)
			got := [5]int64{p.Lag, p.Answered, p.HandedOver, p.Backlog, p.Unconsumed}
			want := [5]int64{tc.lag, tc.answered, tc.handedOver, tc.backlog, tc.unrd}
			if got != want {
				t.Errorf("lag, answered, handed over, backlog, unconsumed = %v, want %v", got, want)
			}
		})
	}
	if p := Of(0, 150, 100, "ks2:!!"); p.MetadataErr == nil || p.Backlog != 50 {
		t.Errorf("damaged metadata: %+v, want an error and the whole lag as backlog", p)
	}
	if p := Of(0, 150, 100, "written by another tool"); p.MetadataErr != nil || p.Backlog != 50 {
		t.Errorf("foreign metadata: %+v, want it ignored", p)
	}
}

func TestMeasureReadsCommitMetadata(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "req"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	client, err := sarama.NewClient(c.ListenAddrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	for part, n := range map[int32]int{0: 300, 1: 40} {
		for i := range n {
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "req", Partition: part, Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Nothing committed: everything waits.
	res, err := Measure(context.Background(), client, "g", "req", true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Lag != 340 || res.Backlog != 340 || res.Partitions != 2 {
		t.Fatalf("before any commit: %+v", res)
	}

	// Partition 0: a long call at 10, 10..299 answered but 10; partition 1:
	// committed to 30, nothing above.
	md, _ := offsets.EncodeCommit(10, offsets.Commit{Done: []offsets.Range{{First: 11, Last: 299}}})
	commitAs(t, c.ListenAddrs(), "g", "req", map[int32]mark{0: {10, md}, 1: {30, ""}})

	res, err = Measure(context.Background(), client, "g", "req", true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Lag != 290+10 || res.Answered != 289 || res.Backlog != 1+10 {
		t.Errorf("lag %d answered %d backlog %d, want 300, 289, 11 (%+v)", res.Lag, res.Answered, res.Backlog, res.PerPartition)
	}
	if res.Settled != 10+289+30 {
		t.Errorf("settled %d, want 329", res.Settled)
	}
}

func TestClientCacheSharesAndClosesIdleClients(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Unix(1000, 0)
	created := 0
	cache := &ClientCache{IdleTimeout: time.Minute, Now: func() time.Time { return now },
		NewClient: func(addrs []string, cfg *sarama.Config) (sarama.Client, error) {
			created++
			return sarama.NewClient(addrs, cfg)
		}}
	defer cache.Close()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	key := Key(c.ListenAddrs(), "plain", []byte("pw"))
	a, relA, err := cache.Get(key, c.ListenAddrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, relB, err := cache.Get(key, c.ListenAddrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || created != 1 {
		t.Fatalf("two pipelines on one cluster got %d clients", created)
	}
	if Key(c.ListenAddrs(), "plain", []byte("rotated")) == key {
		t.Fatal("a rotated credential must give a new key")
	}
	relA()
	relB()
	now = now.Add(30 * time.Second)
	if n := cache.Sweep(); n != 1 || a.Closed() {
		t.Fatalf("client closed before its idle timeout (%d open)", n)
	}
	now = now.Add(time.Minute)
	if n := cache.Sweep(); n != 0 || !a.Closed() {
		t.Fatalf("idle client not closed (%d open)", n)
	}
}

type mark struct {
	offset   int64
	metadata string
}

// commitAs joins group and commits marks as a worker would.
func commitAs(t *testing.T, brokers []string, group, topic string, marks map[int32]mark) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := &committer{topic: topic, marks: marks, done: cancel}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
	}
	if !h.committed {
		t.Fatal("no commit")
	}
}

type committer struct {
	topic     string
	marks     map[int32]mark
	done      func()
	committed bool
}

func (h *committer) Setup(s sarama.ConsumerGroupSession) error {
	if len(s.Claims()[h.topic]) != len(h.marks) {
		return nil
	}
	for p, m := range h.marks {
		s.MarkOffset(h.topic, p, m.offset, m.metadata)
	}
	s.Commit()
	h.committed = true
	h.done()
	return nil
}
func (h *committer) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *committer) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}
