// Package portal is the kafkasend data plane: it consumes chunked jobs from
// the requests topic, reassembles them, executes them against the upstream
// with bounded concurrency, produces exactly one final response per job to
// its reply topic, and commits a request offset only once every job with a
// chunk at or below it has had its response acknowledged by Kafka.
//
// Flow per message (ConsumeClaim, one goroutine per partition, never blocked
// by upstream work):
//
//	parse chunk ─▶ wait for an in-flight slot (backpressure) ─▶ assembler.Add
//	  pending   ─▶ keep consuming
//	  complete  ─▶ goroutine: execute upstream call ─▶ produce response
//	  rejected  ─▶ produce error response
//	  duplicate ─▶ mark done (or attach to the job still in flight)
//	unparsable ─▶ dead-letter topic (or count and skip)
//
// Producer acknowledgements mark the job's chunk offsets done; a background
// loop marks the lowest committable offset per partition and sarama commits.
package portal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"
	"k8s.io/apimachinery/pkg/util/wait"

	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/internal/portal/assembler"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/offsets"
	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

// Dead-letter headers added to a copy of the original message.
const (
	HeaderDLQReason    = "ks-dlq-reason"
	HeaderDLQTopic     = "ks-dlq-topic"
	HeaderDLQPartition = "ks-dlq-partition"
	HeaderDLQOffset    = "ks-dlq-offset"
)

// Options of a Portal besides its configuration.
type Options struct {
	Log     logr.Logger
	Metrics *Metrics
	// Transport, when set, is used for upstream calls (tests).
	Transport *http.Transport
	// CommitInterval is how often committable offsets are marked (default 1s).
	CommitInterval time.Duration
	// SessionTimeout of the consumer group (default 10s, Kafka's minimum is 6s).
	SessionTimeout time.Duration
	// ConfigureSarama, when set, adjusts the sarama configuration (tests).
	ConfigureSarama func(*sarama.Config)
}

// Portal is one worker.
type Portal struct {
	cfg     config.Config
	log     logr.Logger
	metrics *Metrics
	exec    *upstream.Executor
	asm     *assembler.Assembler
	offs    *offsets.Manager
	sc      *sarama.Config
	opts    Options

	producer sarama.AsyncProducer
	group    sarama.ConsumerGroup
	// admin reads the committed offsets' metadata when partitions are assigned.
	admin sarama.ClusterAdmin

	// answered holds, per partition of the current session, offsets above
	// the committed one whose jobs were already answered (from the commit
	// metadata): they are skipped, not run again. Written in Setup, read and
	// shrunk by that partition's ConsumeClaim only.
	answered map[int32]map[int64]struct{}
	// marked is the last (offset, metadata) marked per partition.
	marked sync.Map

	// slots bounds the jobs being executed or answered.
	slots *semaphore.Weighted

	mu       sync.Mutex
	inflight map[string]*flight // by job ID

	firstSeen sync.Map // job ID -> time.Time of its first chunk, multi-chunk jobs only
	routes    sync.Map // job ID -> wire.Routing from chunk 0, multi-chunk jobs only

	// workCtx is the parent of every upstream call; cancelled when the drain
	// timeout has passed on shutdown.
	workCtx    context.Context
	cancelWork context.CancelFunc

	ready   atomic.Bool
	session atomic.Pointer[sessionRef]
	closing chan struct{}
	wg      sync.WaitGroup // producer loops
}

type sessionRef struct{ s sarama.ConsumerGroupSession }

// flight is one job from assembly to the acknowledgement of its response.
type flight struct {
	id        string
	partition int32
	started   time.Time
	// bytes of the assembled payload to give back to the assembler.
	bytes int64
	// slot is true when the flight holds an in-flight slot.
	slot   bool
	cancel context.CancelFunc

	// Guarded by Portal.mu.
	positions []assembler.Position
	abandoned bool
	finished  bool
	outcome   wire.ErrorKind

	released bool

	pending atomic.Int32 // response messages not yet acknowledged
	done    chan struct{}
}

// New builds a portal from its configuration; Run starts it.
func New(cfg config.Config, opts Options) (*Portal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = time.Second
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = 10 * time.Second
	}
	exec, err := upstream.New(upstream.Options{
		Upstream: cfg.Upstream, Retries: cfg.Retries, Timeouts: cfg.Timeouts, OAuth: cfg.OAuth,
		MaxInFlight: cfg.Concurrency.MaxInFlight, Observer: upstreamObserver{opts.Metrics},
		Log: opts.Log.WithName("upstream"), Transport: opts.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	asm, err := assembler.New(assembler.Config{
		MaxRequestBytes: cfg.Upstream.MaxRequestBytes,
		MaxBytes:        cfg.Concurrency.MaxBytes,
		AssemblyTimeout: cfg.Timeouts.ChunkAssembly.Duration,
		RoomWait:        cfg.Timeouts.ChunkAssembly.Duration,
	})
	if err != nil {
		return nil, fmt.Errorf("assembler: %w", err)
	}
	sc, err := saramaConfig(cfg, opts)
	if err != nil {
		return nil, err
	}
	workCtx, cancelWork := context.WithCancel(context.Background())
	return &Portal{
		cfg: cfg, log: opts.Log, metrics: opts.Metrics, exec: exec, asm: asm,
		offs: offsets.NewManager(), sc: sc, opts: opts,
		slots:    semaphore.NewWeighted(int64(cfg.Concurrency.MaxInFlight)),
		inflight: map[string]*flight{},
		workCtx:  workCtx, cancelWork: cancelWork,
		closing: make(chan struct{}),
	}, nil
}

// saramaConfig builds the consumer and idempotent producer configuration.
func saramaConfig(cfg config.Config, opts Options) (*sarama.Config, error) {
	k := cfg.Kafka
	var cr kafkaconf.Credentials
	var err error
	if k.TLS != nil || k.SASL != nil {
		var ca, cert, key, user, pw string
		if k.TLS != nil {
			ca, cert, key = k.TLS.CAFile, k.TLS.CertFile, k.TLS.KeyFile
		}
		if k.SASL != nil {
			user, pw = k.SASL.UsernameFile, k.SASL.PasswordFile
		}
		if cr, err = kafkaconf.ReadFileCredentials(ca, cert, key, user, pw); err != nil {
			return nil, fmt.Errorf("kafka credentials: %w", err)
		}
	}
	o := kafkaconf.Options{Version: k.Version, ClientID: k.ClientID, TLS: k.TLS != nil}
	if k.SASL != nil {
		o.SASLMechanism = k.SASL.Mechanism
	}
	sc, err := kafkaconf.New(o, cr)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if k.InitialOffset == "latest" {
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = opts.CommitInterval
	sc.Consumer.Group.Session.Timeout = opts.SessionTimeout
	sc.Consumer.Group.Heartbeat.Interval = opts.SessionTimeout / 3
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// Revoked partitions' jobs get the drain timeout to finish in Cleanup.
	sc.Consumer.Group.Rebalance.Timeout = cfg.Timeouts.Drain.Duration + 10*time.Second
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Fetch.Default = 1 << 20
	// Buffered records are chunk data held twice (fetched and assembled):
	// keep few per partition; the consumer refills faster than jobs finish.
	sc.ChannelBufferSize = 32

	kafkaconf.ChunkProducer(sc, k.MaxMessageBytes)
	sc.Producer.Flush.Bytes = 1 << 20
	if opts.ConfigureSarama != nil {
		opts.ConfigureSarama(sc)
	}
	return sc, nil
}

// Ready reports whether the portal has joined its consumer group.
func (p *Portal) Ready() bool { return p.ready.Load() }

// Handler serves /healthz, /readyz and /metrics.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "not joined to the consumer group", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(p.metrics.Registry, promhttp.HandlerOpts{Registry: p.metrics.Registry}))
	return mux
}

// Run consumes until ctx ends, then drains: it stops fetching, lets
// in-flight jobs finish and answer for up to the drain timeout, commits,
// and returns. Jobs still running after the drain timeout are cancelled
// without an answer; their offsets stay uncommitted, so the next owner of
// their partition executes them again.
func (p *Portal) Run(ctx context.Context) error {
	var err error
	p.producer, err = sarama.NewAsyncProducer(p.cfg.Kafka.Brokers, p.sc)
	if err != nil {
		return fmt.Errorf("creating producer: %w", err)
	}
	p.wg.Add(2)
	go p.successes()
	go p.producerErrors()
	defer p.closeProducer()

	p.admin, err = sarama.NewClusterAdmin(p.cfg.Kafka.Brokers, p.sc)
	if err != nil {
		return fmt.Errorf("creating admin client: %w", err)
	}
	defer func() { _ = p.admin.Close() }()

	p.group, err = sarama.NewConsumerGroup(p.cfg.Kafka.Brokers, p.cfg.Kafka.ConsumerGroup, p.sc)
	if err != nil {
		return fmt.Errorf("joining consumer group %s: %w", p.cfg.Kafka.ConsumerGroup, err)
	}
	go func() {
		for err := range p.group.Errors() {
			p.log.Error(err, "Consumer group error")
		}
	}()

	loops, stopLoops := context.WithCancel(context.Background())
	defer stopLoops()
	go wait.UntilWithContext(loops, p.commitLoop, p.opts.CommitInterval)
	go wait.UntilWithContext(loops, p.expireLoop, expireInterval(p.cfg.Timeouts.ChunkAssembly.Duration))

	p.log.Info("Consuming", "topic", p.cfg.Topics.Requests, "group", p.cfg.Kafka.ConsumerGroup,
		"maxInFlight", p.cfg.Concurrency.MaxInFlight, "maxBytes", p.cfg.Concurrency.MaxBytes)
	var runErr error
	newBackoff := func() wait.Backoff {
		return wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
	}
	backoff := newBackoff()
	for ctx.Err() == nil {
		if err := p.group.Consume(ctx, []string{p.cfg.Topics.Requests}, p); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				break
			}
			p.log.Error(err, "Consume failed; retrying")
			select {
			case <-ctx.Done():
			case <-time.After(backoff.Step()):
			}
			continue
		}
		backoff = newBackoff()
	}
	// Consume returned after Cleanup drained the last session.
	p.ready.Store(false)
	if err := p.group.Close(); err != nil {
		runErr = fmt.Errorf("leaving consumer group: %w", err)
	}
	p.cancelWork()
	p.exec.Close()
	p.log.Info("Stopped")
	return runErr
}

func expireInterval(assembly time.Duration) time.Duration {
	return min(max(assembly/10, 50*time.Millisecond), time.Second)
}

func (p *Portal) closeProducer() {
	close(p.closing)
	p.producer.AsyncClose()
	p.wg.Wait()
}

// Setup implements sarama.ConsumerGroupHandler.
func (p *Portal) Setup(s sarama.ConsumerGroupSession) error {
	p.answered = p.answeredAbove(s.Claims())
	p.session.Store(&sessionRef{s})
	p.ready.Store(true)
	p.log.Info("Joined consumer group", "generation", s.GenerationID(), "memberID", s.MemberID(), "claims", s.Claims())
	return nil
}

// answeredAbove reads, from the group's committed offsets, which offsets
// above each commit point were already answered by a previous owner. A
// failure to read them only means those jobs may run again.
func (p *Portal) answeredAbove(claims map[string][]int32) map[int32]map[int64]struct{} {
	out := map[int32]map[int64]struct{}{}
	parts := claims[p.cfg.Topics.Requests]
	if len(parts) == 0 {
		return out
	}
	resp, err := p.admin.ListConsumerGroupOffsets(p.cfg.Kafka.ConsumerGroup, map[string][]int32{p.cfg.Topics.Requests: parts})
	if err != nil {
		p.log.Info("Cannot read committed offsets; answered jobs above them may run again", "error", err.Error())
		return out
	}
	for _, part := range parts {
		b := resp.GetBlock(p.cfg.Topics.Requests, part)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset < 0 {
			continue
		}
		c, err := offsets.DecodeCommit(b.Offset, b.Metadata)
		if err != nil || len(c.Done) == 0 || c.DoneCount() > 1<<20 {
			continue
		}
		set := make(map[int64]struct{}, c.DoneCount())
		for _, r := range c.Done {
			for o := r.First; o <= r.Last; o++ {
				set[o] = struct{}{}
			}
		}
		out[part] = set
		p.log.Info("Skipping jobs answered before the last commit", "partition", part, "offsets", len(set))
	}
	return out
}

// Cleanup implements sarama.ConsumerGroupHandler: the session's partitions
// are being revoked (rebalance or shutdown). Jobs read from them get the
// drain timeout to finish and be answered; the rest are cancelled without
// an answer. Final offsets are committed, and partial jobs of the revoked
// partitions are dropped: the next owner reads their chunks again.
func (p *Portal) Cleanup(s sarama.ConsumerGroupSession) error {
	p.ready.Store(false)
	revoked := map[int32]bool{}
	for _, parts := range s.Claims() {
		for _, part := range parts {
			revoked[part] = true
		}
	}
	drain := p.cfg.Timeouts.Drain.Duration
	deadline := time.After(drain)
	for {
		waiting := p.flightsOf(revoked)
		if len(waiting) == 0 {
			break
		}
		p.log.Info("Waiting for in-flight jobs of revoked partitions", "jobs", len(waiting), "drain", drain)
		select {
		case <-waiting[0].done:
			continue
		case <-deadline:
		}
		// The drain timeout passed: cancel what is left without an answer.
		p.mu.Lock()
		for _, f := range p.flightsOfLocked(revoked) {
			f.abandoned = true
			p.asm.Forget(f.id)
			if f.cancel != nil {
				f.cancel()
			}
			p.metrics.revokeCancelled.Inc()
			p.log.Info("Cancelled job of a revoked partition; its next owner runs it again", "job", f.id, "partition", f.partition)
		}
		p.mu.Unlock()
		break
	}
	p.markCommittable(s)
	s.Commit()
	for part := range revoked {
		tp := offsets.TopicPartition{Topic: p.cfg.Topics.Requests, Partition: part}
		p.offs.Revoke(tp)
		p.asm.DropPartition(p.cfg.Topics.Requests, part)
		p.metrics.uncommitted.DeleteLabelValues(p.cfg.Topics.Requests, partitionLabel(part))
		p.marked.Delete(tp)
	}
	if p.asm.PartialJobs() == 0 {
		// Per-job notes of partial jobs dropped above.
		p.firstSeen.Clear()
		p.routes.Clear()
	}
	if ref := p.session.Load(); ref != nil && ref.s == s {
		p.session.CompareAndSwap(ref, nil)
	}
	return nil
}

// flightsOf returns the unfinished flights read from the given partitions.
func (p *Portal) flightsOf(parts map[int32]bool) []*flight {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flightsOfLocked(parts)
}

func (p *Portal) flightsOfLocked(parts map[int32]bool) []*flight {
	var out []*flight
	for _, f := range p.inflight {
		if parts[f.partition] && !f.finished && !f.abandoned {
			out = append(out, f)
		}
	}
	return out
}

// ConsumeClaim implements sarama.ConsumerGroupHandler. It never waits for
// upstream work: only for an in-flight slot or assembly budget, which is the
// backpressure that pauses this partition while the group session lives on.
func (p *Portal) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := s.Context()
	tp := offsets.TopicPartition{Topic: claim.Topic(), Partition: claim.Partition()}
	answered := p.answered[claim.Partition()]
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if err := p.offs.Track(tp, m.Offset); err != nil {
				p.log.Error(err, "Tracking offset", "partition", m.Partition, "offset", m.Offset)
			}
			if _, ok := answered[m.Offset]; ok {
				delete(answered, m.Offset)
				p.offs.Done(tp, m.Offset)
				p.metrics.skippedAnswered.Inc()
				continue
			}
			if err := p.handle(ctx, m); err != nil {
				// Only a revoked session ends handling early; the message
				// is read again by the partition's next owner. Returning the
				// error would only log a context cancellation per partition.
				return nil //nolint:nilerr // see above
			}
		}
	}
}

// handle takes one request-topic message. It returns an error only when ctx
// ended while waiting for room.
func (p *Portal) handle(ctx context.Context, m *sarama.ConsumerMessage) error {
	pos := assembler.Position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	c, err := wire.ParseChunk(m.Key, m.Headers, m.Value)
	if err == nil && c.Type != wire.TypeRequest {
		err = fmt.Errorf("a %s chunk on the requests topic", c.Type)
	}
	if err != nil {
		p.deadLetter(m, err)
		return nil
	}

	if !p.slots.TryAcquire(1) {
		start := time.Now()
		if err := p.slots.Acquire(ctx, 1); err != nil {
			return err
		}
		p.metrics.backpressure.Add(time.Since(start).Seconds())
	}
	if c.Index == 0 && c.Count > 1 {
		// Remembered so that a job rejected before it is whole is still
		// answered where its requester listens.
		if r, ok := wire.PeekRouting(c.Data); ok {
			p.routes.Store(c.JobID, r)
		}
	}
	res, err := p.asm.Add(ctx, c, pos)
	if err != nil {
		p.slots.Release(1)
		return err
	}
	switch res.Outcome {
	case assembler.Pending:
		p.slots.Release(1)
		p.firstSeen.LoadOrStore(c.JobID, time.Now())
	case assembler.Duplicate:
		p.slots.Release(1)
		p.metrics.duplicates.Inc()
		p.duplicate(res, pos)
	case assembler.Rejected:
		p.metrics.jobsReceived.Inc()
		var route wire.Routing
		if c.Count == 1 {
			route = peekRouting(c.Data)
		} else {
			route = p.routeOf(res.JobID) // stored from chunk 0, if it came
		}
		f := p.startFlight(res, m.Partition, 0)
		p.respond(f, errorResponse(res.JobID, res.Kind, res.Err), route.ReplyTopic, route.ReplyPartition)
	case assembler.Complete:
		p.metrics.jobsReceived.Inc()
		if len(res.Positions) > 1 {
			p.routes.Delete(res.JobID) // not needed: the whole payload is here
		}
		f := p.startFlight(res, m.Partition, int64(len(res.Payload)))
		req, err := wire.DecodeRequest(res.Payload)
		if err != nil {
			route := peekRouting(res.Payload)
			p.respond(f, errorResponse(res.JobID, wire.KindOf(err), err), route.ReplyTopic, route.ReplyPartition)
			return nil
		}
		req.ID = res.JobID // the job ID travels as the record key
		callCtx, cancel := context.WithCancel(p.workCtx)
		f.cancel = cancel
		go p.execute(callCtx, f, req)
	}
	return nil
}

// defaultRoute sends an answer to topics.replies, placed by the job ID.
var defaultRoute = wire.Routing{ReplyPartition: wire.NoPartition}

// routeOf returns (and forgets) the routing seen in a job's chunk 0, or the
// default route when none was seen.
func (p *Portal) routeOf(jobID string) wire.Routing {
	if r, ok := p.routes.LoadAndDelete(jobID); ok {
		return r.(wire.Routing)
	}
	return defaultRoute
}

// peekRouting is wire.PeekRouting falling back to the default route.
func peekRouting(data []byte) wire.Routing {
	if r, ok := wire.PeekRouting(data); ok {
		return r
	}
	return defaultRoute
}

func errorResponse(id string, kind wire.ErrorKind, err error) *wire.Response {
	if kind == wire.ErrorNone {
		kind = wire.ErrorInternal
	}
	return &wire.Response{ID: id, ErrorKind: kind, ErrorMessage: err.Error()}
}

// startFlight registers a job that will be answered. It holds a slot.
func (p *Portal) startFlight(res assembler.Result, partition int32, bytes int64) *flight {
	started := time.Now()
	if len(res.Positions) > 1 { // only multi-chunk jobs have a first-seen time
		if t, ok := p.firstSeen.LoadAndDelete(res.JobID); ok {
			started = t.(time.Time)
		}
	}
	f := &flight{
		id: res.JobID, partition: partition, started: started, bytes: bytes, slot: true,
		positions: res.Positions, done: make(chan struct{}),
	}
	p.mu.Lock()
	if old := p.inflight[f.id]; old != nil && !old.finished {
		// The same job ID is in flight already (a requester reused an ID
		// after the recent-jobs memory forgot it): keep both answers apart.
		p.log.Info("Job ID already in flight; executing the new copy too", "job", f.id)
	}
	p.inflight[f.id] = f
	p.mu.Unlock()
	p.metrics.inFlight.Inc()
	return f
}

// duplicate handles a chunk that needs no answer of its own.
func (p *Portal) duplicate(res assembler.Result, pos assembler.Position) {
	tp := offsets.TopicPartition{Topic: pos.Topic, Partition: pos.Partition}
	if res.Finished {
		p.mu.Lock()
		if f := p.inflight[res.JobID]; f != nil && !f.finished && !f.abandoned {
			// Done once the job's answer is acknowledged.
			f.positions = append(f.positions, pos)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	p.offs.Done(tp, pos.Offset)
}

// execute runs one upstream call and answers the job.
func (p *Portal) execute(ctx context.Context, f *flight, req *wire.Request) {
	resp := p.exec.Do(ctx, req)
	topic, partition := req.ReplyTopic, req.ReplyPartition
	// The request payload is no longer used (nothing references it past
	// this point): give its bytes back to the budget now rather than when
	// the response is acknowledged.
	p.releaseBytes(f)
	p.mu.Lock()
	abandoned := f.abandoned
	p.mu.Unlock()
	if abandoned {
		p.release(f)
		return
	}
	p.respond(f, resp, topic, partition)
}

// releaseBytes gives a flight's assembled payload bytes back to the budget.
func (p *Portal) releaseBytes(f *flight) {
	p.mu.Lock()
	n := f.bytes
	f.bytes = 0
	p.mu.Unlock()
	if n > 0 {
		if err := p.asm.Release(n); err != nil {
			p.log.Error(err, "Releasing assembly bytes", "job", f.id)
		}
	}
}

// respond produces the job's response; acknowledgements finish the flight.
func (p *Portal) respond(f *flight, resp *wire.Response, topic string, partition int32) {
	if topic == "" {
		topic = p.cfg.Topics.Replies
	}
	f.outcome = resp.ErrorKind
	msgs, err := wire.ResponseMessages(topic, partition, resp, p.cfg.Kafka.MaxMessageBytes)
	if err != nil {
		// The upstream's answer cannot be framed (e.g. an invalid header):
		// answer with an error instead, which always can.
		p.log.Error(err, "Encoding response", "job", f.id)
		f.outcome = wire.ErrorInternal
		msgs, err = wire.ResponseMessages(topic, partition, errorResponse(f.id, wire.ErrorInternal, err), p.cfg.Kafka.MaxMessageBytes)
		if err != nil {
			p.log.Error(err, "Encoding error response; the job stays unanswered until redelivered", "job", f.id)
			p.release(f)
			return
		}
	}
	f.pending.Store(int32(len(msgs)))
	for _, m := range msgs {
		m.Metadata = f
		if !p.send(m) {
			return
		}
	}
}

// send hands a message to the producer unless the portal is closing.
func (p *Portal) send(m *sarama.ProducerMessage) bool {
	select {
	case p.producer.Input() <- m:
		return true
	case <-p.closing:
		return false
	}
}

// successes finishes flights and dead letters as Kafka acknowledges them.
func (p *Portal) successes() {
	defer p.wg.Done()
	for m := range p.producer.Successes() {
		switch md := m.Metadata.(type) {
		case *flight:
			if md.pending.Add(-1) == 0 {
				p.finish(md)
			}
		case assembler.Position:
			p.offs.Done(offsets.TopicPartition{Topic: md.Topic, Partition: md.Partition}, md.Offset)
		}
	}
}

// producerErrors retries failed messages with backoff until they are
// acknowledged or the portal closes; the job's offsets stay uncommitted
// meanwhile, so nothing is lost if the process dies.
func (p *Portal) producerErrors() {
	defer p.wg.Done()
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 5 * time.Second}
	for pe := range p.producer.Errors() {
		p.metrics.produceErrors.Inc()
		p.log.Error(pe.Err, "Producing failed; retrying", "topic", pe.Msg.Topic)
		m := &sarama.ProducerMessage{
			Topic: pe.Msg.Topic, Partition: pe.Msg.Partition, Key: pe.Msg.Key, Value: pe.Msg.Value,
			Headers: pe.Msg.Headers, Metadata: pe.Msg.Metadata,
		}
		d := backoff.Step()
		go func() {
			select {
			case <-time.After(d):
				p.send(m)
			case <-p.closing:
			}
		}()
	}
}

// finish marks a job's offsets done once its response is acknowledged.
func (p *Portal) finish(f *flight) {
	p.mu.Lock()
	if f.finished {
		p.mu.Unlock()
		return
	}
	f.finished = true
	positions := f.positions
	abandoned := f.abandoned
	if p.inflight[f.id] == f {
		delete(p.inflight, f.id)
	}
	p.mu.Unlock()
	if !abandoned {
		p.doneAll(positions)
	}
	p.metrics.jobsCompleted.WithLabelValues(outcome(f.outcome)).Inc()
	p.metrics.jobDuration.Observe(time.Since(f.started).Seconds())
	p.release(f)
}

// doneAll marks a job's chunk offsets done, each partition's at once, so
// that no commit records some chunks of the job as answered and not others.
func (p *Portal) doneAll(positions []assembler.Position) {
	if len(positions) == 0 {
		return
	}
	// The chunks of a job share its key, so normally one partition.
	first := offsets.TopicPartition{Topic: positions[0].Topic, Partition: positions[0].Partition}
	same := make([]int64, 0, len(positions))
	for _, pos := range positions {
		if pos.Topic != first.Topic || pos.Partition != first.Partition {
			same = nil
			break
		}
		same = append(same, pos.Offset)
	}
	if same != nil {
		p.offs.DoneAll(first, same)
		return
	}
	byPartition := map[offsets.TopicPartition][]int64{}
	for _, pos := range positions {
		tp := offsets.TopicPartition{Topic: pos.Topic, Partition: pos.Partition}
		byPartition[tp] = append(byPartition[tp], pos.Offset)
	}
	for tp, offs := range byPartition {
		p.offs.DoneAll(tp, offs)
	}
}

// release frees a flight's slot and bytes, once.
func (p *Portal) release(f *flight) {
	p.mu.Lock()
	f.finished = true
	if p.inflight[f.id] == f {
		delete(p.inflight, f.id)
	}
	first := !f.released
	f.released = true
	slot, bytes := f.slot, f.bytes
	f.slot, f.bytes = false, 0
	p.mu.Unlock()
	if !first {
		return
	}
	if f.cancel != nil {
		f.cancel()
	}
	if bytes > 0 {
		if err := p.asm.Release(bytes); err != nil {
			p.log.Error(err, "Releasing assembly bytes", "job", f.id)
		}
	}
	if slot {
		p.slots.Release(1)
	}
	p.metrics.inFlight.Dec()
	close(f.done)
}

// deadLetter sends a message that cannot be tied to a job to the
// dead-letter topic, or counts and skips it when none is configured.
func (p *Portal) deadLetter(m *sarama.ConsumerMessage, cause error) {
	reason := string(wire.KindOf(cause))
	if reason == "" {
		reason = string(wire.ErrorMalformed)
	}
	p.metrics.deadLetters.WithLabelValues(reason).Inc()
	pos := assembler.Position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	p.log.Info("Message cannot be tied to a job", "partition", m.Partition, "offset", m.Offset, "reason", cause.Error(),
		"deadLetterTopic", p.cfg.Topics.DeadLetter)
	if p.cfg.Topics.DeadLetter == "" {
		p.offs.Done(offsets.TopicPartition{Topic: m.Topic, Partition: m.Partition}, m.Offset)
		return
	}
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+4)
	for _, h := range m.Headers {
		if h != nil {
			headers = append(headers, *h)
		}
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderDLQReason), Value: []byte(cause.Error())},
		sarama.RecordHeader{Key: []byte(HeaderDLQTopic), Value: []byte(m.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderDLQPartition), Value: []byte(strconv.Itoa(int(m.Partition)))},
		sarama.RecordHeader{Key: []byte(HeaderDLQOffset), Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	msg := &sarama.ProducerMessage{Topic: p.cfg.Topics.DeadLetter, Partition: wire.NoPartition, Headers: headers, Metadata: pos}
	if m.Key != nil {
		msg.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		msg.Value = sarama.ByteEncoder(m.Value)
	}
	p.send(msg)
}

// commitLoop marks each claimed partition's committable offset; sarama's
// auto-commit sends them.
func (p *Portal) commitLoop(context.Context) {
	if ref := p.session.Load(); ref != nil {
		p.markCommittable(ref.s)
	}
	p.metrics.heldBytes.Set(float64(p.asm.HeldBytes()))
	p.metrics.partialJobs.Set(float64(p.asm.PartialJobs()))
}

func (p *Portal) markCommittable(s sarama.ConsumerGroupSession) {
	type mark struct {
		next int64
		md   string
	}
	for topic, parts := range s.Claims() {
		for _, part := range parts {
			tp := offsets.TopicPartition{Topic: topic, Partition: part}
			if next, md, ok := p.offs.CommitState(tp); ok {
				m := mark{next, md}
				if last, seen := p.marked.Load(tp); !seen || last.(mark) != m {
					// MarkOffset moves the commit point forward; ResetOffset
					// at the same offset replaces the metadata (the list of
					// answered offsets above it grows while the point stays).
					s.MarkOffset(topic, part, next, md)
					s.ResetOffset(topic, part, next, md)
					p.marked.Store(tp, m)
				}
			}
			p.metrics.uncommitted.WithLabelValues(topic, partitionLabel(part)).Set(float64(p.offs.Pending(tp)))
		}
	}
}

// expireLoop answers partial jobs that outlived the assembly timeout.
func (p *Portal) expireLoop(context.Context) {
	for _, res := range p.asm.Expire(time.Now()) {
		p.firstSeen.Delete(res.JobID)
		if len(res.Positions) == 0 {
			continue
		}
		p.metrics.jobsReceived.Inc()
		// Expired jobs take a slot without waiting: answering them frees
		// their offsets and makes no upstream call.
		slot := p.slots.TryAcquire(1)
		route := p.routeOf(res.JobID)
		f := p.startFlight(res, res.Positions[0].Partition, 0)
		f.slot = slot
		p.respond(f, errorResponse(res.JobID, wire.ErrorIncomplete, res.Err), route.ReplyTopic, route.ReplyPartition)
	}
}

// Serve runs the health and metrics server on addr until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
