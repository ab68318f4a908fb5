// Package portal is the kafkasend data plane: it consumes chunked jobs from
// the requests topic, reassembles them, executes them against the upstream
// with bounded concurrency, produces exactly one final response per job to
// its reply topic, and commits a request offset only once every job with a
// chunk at or below it has had its response acknowledged by Kafka.
//
// Each claimed partition is a partition (partition.go): its own reader,
// offset tracker, inherited commit state and jobs. Its handling goroutine
// never waits for upstream work, only for an in-flight slot or assembly
// budget (backpressure):
//
//	parse chunk ─▶ wait for a slot ─▶ assembler.Add
//	  pending   ─▶ keep consuming
//	  complete  ─▶ goroutine: execute upstream call ─▶ answer (responder.go)
//	  rejected  ─▶ error answer
//	  duplicate ─▶ mark done (or attach to the job still in flight)
//	unparsable ─▶ dead-letter topic (or count and skip)
//
// Membership changes use Kafka's cooperative protocol: only partitions that
// move are released, and a released partition's running jobs are handed
// over, not drained or cancelled (handover.go).
package portal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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
	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

// Options of a Portal besides its configuration.
type Options struct {
	Log     logr.Logger
	Metrics *Metrics
	// Transport, when set, is used for upstream calls (tests).
	Transport *http.Transport
	// CommitInterval is how often committable offsets are marked (default 1s).
	CommitInterval time.Duration
	// SessionTimeout overrides kafka.sessionTimeout (tests; Kafka's minimum
	// is 6s). The heartbeat is then a third of it.
	SessionTimeout time.Duration
	// Instance names this worker in handover leases (default: host name
	// and a random suffix).
	Instance string
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
	sc      *sarama.Config
	opts    Options

	client sarama.Client
	meta   sarama.Client // reply-target checks
	admin  sarama.ClusterAdmin
	// producer writes answers; side writes dead letters and hand-over
	// records, on a connection of its own, so that they never queue in
	// front of answers (an idempotent producer has one request open per
	// broker).
	producer sarama.AsyncProducer
	side     sarama.AsyncProducer
	group    sarama.ConsumerGroup
	handed   *handover
	// handoverKey signs and checks handover control records; nil when the
	// pipeline has none.
	handoverKey []byte

	// slots bounds the jobs being assembled into calls or executed;
	// answers bounds the bytes of answers handed to Kafka and not yet
	// acknowledged (answerBudget). A job moves from its slot to the answer
	// budget when its call returns, so that a slot is not held through the
	// produce acknowledgement.
	slots        *semaphore.Weighted
	answers      *semaphore.Weighted
	answerBudget int64

	mu       sync.Mutex
	inflight map[string]*flight // by job ID

	firstSeen     sync.Map // job ID -> time.Time of its first chunk, multi-chunk jobs only
	missingTopics sync.Map // reply topic -> time.Time until which it is taken as missing
	routes        sync.Map // job ID -> wire.Routing from chunk 0, multi-chunk jobs only

	partsMu sync.Mutex
	parts   map[*partition]struct{}

	// newestOffset returns a partition's log end (client.GetOffset; tests
	// replace it), runLapsed starts a job whose lease lapsed (startJob).
	newestOffset func(topic string, partition int32) (int64, error)
	runLapsed    func(pt *partition, res assembler.Result, leasedFrom string) *flight

	// workCtx is the parent of every upstream call; cancelled once the
	// stop deadline has passed.
	workCtx    context.Context
	cancelWork context.CancelFunc

	ready atomic.Bool

	// sendMu guards the producer's input against its closing: senders hold
	// it shared, closeProducer exclusively.
	sendMu     sync.RWMutex
	sendClosed bool
	// closing ends when the producer starts closing.
	closing     context.Context
	stopSending context.CancelFunc
	wg          sync.WaitGroup // producer loops
	jobs        sync.WaitGroup // goroutines that may still send: calls, retries
}

// New builds a portal from its configuration; Run starts it.
func New(cfg config.Config, opts Options) (*Portal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	opts.Metrics.SetCapacity(cfg.Concurrency.MaxInFlight, cfg.Concurrency.MaxBytes)
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = time.Second
	}
	if opts.SessionTimeout > 0 {
		cfg.Kafka.SessionTimeout.Duration = opts.SessionTimeout
		cfg.Kafka.HeartbeatInterval.Duration = opts.SessionTimeout / 3
	}
	if opts.Instance == "" {
		opts.Instance = instanceName()
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
	key, err := readHandoverKey(cfg.Handover)
	if err != nil {
		return nil, err
	}
	workCtx, cancelWork := context.WithCancel(context.Background())
	closing, stopSending := context.WithCancel(context.Background())
	budget := answerBudget(cfg)
	p := &Portal{
		cfg: cfg, log: opts.Log, metrics: opts.Metrics, exec: exec, asm: asm,
		sc: sc, opts: opts,
		slots:        semaphore.NewWeighted(int64(cfg.Concurrency.MaxInFlight)),
		answers:      semaphore.NewWeighted(budget),
		answerBudget: budget,
		inflight:     map[string]*flight{},
		parts:        map[*partition]struct{}{},
		workCtx:      workCtx, cancelWork: cancelWork,
		closing: closing, stopSending: stopSending,
		handoverKey: key,
	}
	p.handed = newHandover(p, opts.Instance, cfg.Timeouts.HandoverLease.Duration)
	p.newestOffset = func(topic string, partition int32) (int64, error) {
		return p.client.GetOffset(topic, partition, sarama.OffsetNewest)
	}
	p.runLapsed = p.startJob
	return p, nil
}

// answerBudget is how many bytes of answers may wait for Kafka's
// acknowledgement: one largest response and its framing, the term the
// worker's memory sizing already counts (docs/scaling.md).
func answerBudget(cfg config.Config) int64 {
	return cfg.Upstream.MaxResponseBytes + 1<<20
}

// instanceName is the host (pod) name and a random suffix: a restarted pod
// of the same name is another holder.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "portal"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "." + hex.EncodeToString(b[:])
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
	if !sc.Version.IsAtLeast(sarama.V2_4_0_0) {
		// The cooperative protocol (KIP-429) needs Kafka 2.4's group APIs.
		if k.Version != "" && k.RebalanceProtocol == config.RebalanceCooperative {
			return nil, fmt.Errorf("kafka.version %s: the cooperative rebalance protocol needs at least 2.4.0", k.Version)
		}
		if k.Version == "" {
			sc.Version = sarama.V2_4_0_0
		}
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if k.InitialOffset == "latest" {
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = opts.CommitInterval
	sc.Consumer.Group.Session.Timeout = k.SessionTimeout.Duration
	sc.Consumer.Group.Heartbeat.Interval = k.HeartbeatInterval.Duration
	// Cooperative (KIP-429): a membership change releases only the
	// partitions that move. "eager" also offers cooperative-sticky, so that
	// a group of older eager-only workers can be moved in two rollouts.
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	switch {
	case !sc.Version.IsAtLeast(sarama.V2_4_0_0): // eager on a pinned old version
		sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	case k.RebalanceProtocol == config.RebalanceEager:
		sc.Consumer.Group.Rebalance.GroupStrategies = append(sc.Consumer.Group.Rebalance.GroupStrategies, sarama.NewBalanceStrategySticky())
	}
	// A released partition hands its jobs over at once: a rebalance waits
	// only for the release itself.
	sc.Consumer.Group.Rebalance.Timeout = 30 * time.Second
	// A JoinGroup answer may take the whole rebalance timeout: a shorter
	// read timeout would leave ghost members behind.
	sc.Net.ReadTimeout = max(sc.Net.ReadTimeout, sc.Consumer.Group.Rebalance.Timeout+k.SessionTimeout.Duration+5*time.Second)
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Fetch.Default = 1 << 20
	// Buffered records are chunk data held twice (fetched and assembled):
	// keep few per partition; the consumer refills faster than jobs finish.
	sc.ChannelBufferSize = 32
	// A job naming a missing reply topic must not create it.
	sc.Metadata.AllowAutoTopicCreation = false

	kafkaconf.ChunkProducer(sc, k.MaxMessageBytes)
	sc.Producer.Flush.Bytes = 1 << 20
	if opts.ConfigureSarama != nil {
		opts.ConfigureSarama(sc)
	}
	return sc, nil
}

// KafkaConfigs are the consumer and the answer producers' sarama
// configurations of a portal with cfg, for tools that must talk to Kafka as
// the portal does (the bench's HTTP relay).
func KafkaConfigs(cfg config.Config) (consumer, producer *sarama.Config, err error) {
	sc, err := saramaConfig(cfg, Options{CommitInterval: time.Second})
	if err != nil {
		return nil, nil, err
	}
	return sc, producerConfig(sc, cfg.Concurrency.MaxInFlight), nil
}

// producerConfig is sc for the answer producers. Their channels hold
// answers, not fetched chunks, whose bytes the answer budget bounds
// (Portal.answers), so deeper channels cost no memory beyond it; with the
// consumer's 32 records each answer waited for room behind the
// acknowledgement of the ones before it.
func producerConfig(sc *sarama.Config, maxInFlight int) *sarama.Config {
	pc := *sc
	pc.ChannelBufferSize = max(256, min(maxInFlight, 4096))
	return &pc
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

// Run consumes until ctx ends. Then it leaves the group at once, handing
// its partitions over with their running jobs, and keeps answering those
// jobs until they end (each within the request timeout; all within the
// request timeout plus the drain timeout), before it returns.
func (p *Portal) Run(ctx context.Context) error {
	var err error
	p.client, err = sarama.NewClient(p.cfg.Kafka.Brokers, p.sc)
	if err != nil {
		return fmt.Errorf("connecting to Kafka: %w", err)
	}
	p.admin, err = sarama.NewClusterAdminFromClient(p.client)
	if err != nil {
		_ = p.client.Close()
		return fmt.Errorf("creating admin client: %w", err)
	}
	defer func() { _ = p.admin.Close() }() // closes p.client too
	// Reply targets are checked with a client of their own that does not
	// retry metadata requests: a job naming a missing topic costs one round
	// trip, not the retries a real outage deserves.
	mc := *p.sc
	mc.Metadata.Retry.Max = 0
	mc.Metadata.Full = false
	if p.meta, err = sarama.NewClient(p.cfg.Kafka.Brokers, &mc); err != nil {
		return fmt.Errorf("connecting to Kafka: %w", err)
	}
	defer func() { _ = p.meta.Close() }()

	pc := producerConfig(p.sc, p.cfg.Concurrency.MaxInFlight)
	p.producer, err = sarama.NewAsyncProducer(p.cfg.Kafka.Brokers, pc)
	if err != nil {
		return fmt.Errorf("creating producer: %w", err)
	}
	p.side, err = sarama.NewAsyncProducer(p.cfg.Kafka.Brokers, pc)
	if err != nil {
		p.producer.AsyncClose()
		return fmt.Errorf("creating producer: %w", err)
	}
	p.wg.Add(4)
	for _, prod := range []sarama.AsyncProducer{p.producer, p.side} {
		go p.successes(prod)
		go p.producerErrors(prod)
	}
	defer p.closeProducer()

	stopHandover := make(chan struct{})
	handoverDone := make(chan struct{})
	go func() { defer close(handoverDone); p.handed.run(stopHandover) }()

	p.group, err = sarama.NewConsumerGroup(p.cfg.Kafka.Brokers, p.cfg.Kafka.ConsumerGroup, p.sc)
	if err != nil {
		close(stopHandover)
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
		"maxInFlight", p.cfg.Concurrency.MaxInFlight, "maxBytes", p.cfg.Concurrency.MaxBytes,
		"protocol", p.cfg.Kafka.RebalanceProtocol, "instance", p.opts.Instance)
	newBackoff := func() wait.Backoff {
		return wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
	}
	backoff := newBackoff()
	go func() {
		<-ctx.Done()
		p.ready.Store(false) // stopping: not ready from the first moment
	}()
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
	// Consume returned: every partition was released and handed over.
	p.ready.Store(false)
	var runErr error
	if err := p.group.Close(); err != nil {
		runErr = fmt.Errorf("leaving consumer group: %w", err)
	}
	p.finishRunning()
	close(stopHandover)
	<-handoverDone
	p.cancelWork()
	p.exec.Close()
	p.log.Info("Stopped")
	return runErr
}

// finishRunning waits for the jobs still running here after the group was
// left, up to the request timeout plus the drain timeout; it then gives up
// the rest, whose leases lapse and whose next owners run them.
func (p *Portal) finishRunning() {
	limit := p.cfg.Timeouts.Request.Duration + p.cfg.Timeouts.Drain.Duration
	deadline := time.Now().Add(limit)
	for {
		p.mu.Lock()
		var waiting *flight
		for _, f := range p.inflight {
			if !f.released {
				waiting = f
				break
			}
		}
		p.mu.Unlock()
		if waiting == nil {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			p.log.Info("Stop deadline passed; giving up the jobs still running (their leases lapse)", "jobs", p.handed.pending())
			p.mu.Lock()
			var all []*flight
			for _, f := range p.inflight {
				all = append(all, f)
			}
			p.mu.Unlock()
			for _, f := range all {
				p.abandon(f)
			}
			break
		}
		p.log.Info("Answering the jobs still running before stopping", "jobs", p.handed.pending(), "limit", left.Round(time.Second))
		select {
		case <-waiting.done:
		case <-time.After(min(left, 10*time.Second)):
		}
	}
	// Let the answers' acknowledgements arrive (they mark the jobs done).
	p.jobs.Wait()
}

func expireInterval(assembly time.Duration) time.Duration {
	return min(max(assembly/10, 50*time.Millisecond), time.Second)
}

// Setup implements sarama.ConsumerGroupHandler: the member joined (once
// per session; with the cooperative protocol once until it leaves).
func (p *Portal) Setup(s sarama.ConsumerGroupSession) error {
	p.ready.Store(true)
	p.log.Info("Joined consumer group", "generation", s.GenerationID(), "memberID", s.MemberID(), "claims", s.Claims())
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler. Partitions are released
// one by one at the end of their ConsumeClaim; nothing is left to do.
func (p *Portal) Cleanup(sarama.ConsumerGroupSession) error {
	return nil
}

// ConsumeClaim implements sarama.ConsumerGroupHandler: one partition from
// its assignment to its release.
func (p *Portal) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	pt := p.newPartition(s, claim)
	p.partsMu.Lock()
	p.parts[pt] = struct{}{}
	p.partsMu.Unlock()
	p.log.V(1).Info("Partition claimed", "partition", pt.id, "offset", pt.start)

	go pt.pump(claim)
	pt.run()
	pt.cancel()

	p.partsMu.Lock()
	delete(p.parts, pt)
	p.partsMu.Unlock()
	pt.release(s)
	p.log.V(1).Info("Partition released", "partition", pt.id)
	return nil
}

// claimed returns the partitions claimed now.
func (p *Portal) claimed() []*partition {
	p.partsMu.Lock()
	defer p.partsMu.Unlock()
	out := make([]*partition, 0, len(p.parts))
	for pt := range p.parts {
		out = append(out, pt)
	}
	return out
}

// handleChunk takes one request chunk of a partition. It returns an error
// only when the partition was released while waiting for room.
func (p *Portal) handleChunk(pt *partition, c wire.Chunk, pos position) error {
	if !p.slots.TryAcquire(1) {
		start := time.Now()
		if err := p.slots.Acquire(pt.ctx, 1); err != nil {
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
	res, err := p.asm.Add(pt.ctx, c, pos)
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
		p.duplicate(pt, res, pos)
	case assembler.Rejected:
		p.metrics.jobsReceived.Inc()
		var route wire.Routing
		if c.Count == 1 {
			route = peekRouting(c.Data)
		} else {
			route = p.routeOf(res.JobID) // stored from chunk 0, if it came
		}
		f := p.startFlight(pt, res, 0, "")
		p.answerError(f, res.Kind, res.Err, route)
	case assembler.Complete:
		p.metrics.jobsReceived.Inc()
		if len(res.Positions) > 1 {
			p.routes.Delete(res.JobID) // not needed: the whole payload is here
		}
		p.startJob(pt, res, "")
	}
	return nil
}

// startJob executes an assembled job; it holds a slot. leasedFrom names
// the worker that ran it before, for a job run after its lease lapsed.
func (p *Portal) startJob(pt *partition, res assembler.Result, leasedFrom string) *flight {
	if res.Outcome != assembler.Complete {
		// A parked copy that could not be assembled: answer it with its error.
		f := p.startFlight(pt, res, 0, leasedFrom)
		p.answerError(f, res.Kind, res.Err, p.routeOf(res.JobID))
		return f
	}
	f := p.startFlight(pt, res, int64(len(res.Payload)), leasedFrom)
	req, err := wire.DecodeRequest(res.Payload)
	if err != nil {
		p.answerError(f, wire.KindOf(err), err, peekRouting(res.Payload))
		return f
	}
	req.ID = res.JobID // the job ID travels as the record key
	route := wire.Routing{ReplyTopic: req.ReplyTopic, ReplyPartition: req.ReplyPartition}
	callCtx, cancel := context.WithCancel(p.workCtx)
	p.mu.Lock()
	f.cancel = cancel
	f.route = route
	p.mu.Unlock()
	p.jobs.Add(1)
	go func() {
		defer p.jobs.Done()
		// Checked here, off the partition's consume path: finding out that
		// a topic is missing may take a metadata round trip.
		if err := p.checkReplyTarget(route); err != nil {
			p.refuseReplyTarget(f, route, err)
			return
		}
		p.execute(callCtx, f, req)
	}()
	return f
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

// duplicate handles a chunk that needs no answer of its own.
func (p *Portal) duplicate(pt *partition, res assembler.Result, pos position) {
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
	pt.doneAll([]position{pos})
}

// commitLoop marks each claimed partition's commit state; sarama's
// auto-commit sends it.
func (p *Portal) commitLoop(context.Context) {
	for _, pt := range p.claimed() {
		if s := pt.session(); s != nil {
			pt.markCommit(s)
		}
	}
	p.metrics.heldBytes.Set(float64(p.asm.HeldBytes()))
	p.metrics.partialJobs.Set(float64(p.asm.PartialJobs()))
}

// expireLoop answers partial jobs that outlived the assembly timeout.
func (p *Portal) expireLoop(context.Context) {
	for _, res := range p.asm.Expire(time.Now()) {
		p.firstSeen.Delete(res.JobID)
		if len(res.Positions) == 0 {
			continue
		}
		pt := p.partitionOf(res.Positions[0])
		if pt == nil {
			continue // released meanwhile: the next owner reads the chunks again
		}
		p.metrics.jobsReceived.Inc()
		// Expired jobs take a slot without waiting: answering them frees
		// their offsets and makes no upstream call.
		slot := p.slots.TryAcquire(1)
		route := p.routeOf(res.JobID)
		f := p.startFlight(pt, res, 0, "")
		f.slot = slot
		p.answerError(f, wire.ErrorIncomplete, res.Err, route)
	}
}

// partitionOf returns the claimed partition a position was read from.
func (p *Portal) partitionOf(pos position) *partition {
	p.partsMu.Lock()
	defer p.partsMu.Unlock()
	for pt := range p.parts {
		if pt.id == pos.Partition && pt.topic == pos.Topic {
			return pt
		}
	}
	return nil
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
