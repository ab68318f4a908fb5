package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/kafkaconf"
	"kafkasend.io/kafkasend/internal/lag"
)

// LagTarget is what one backlog measurement looks at.
type LagTarget struct {
	Brokers      []string
	Group, Topic string
	// FromEarliest counts a partition without commit from its log start.
	FromEarliest bool
	Options      kafkaconf.Options
	Credentials  kafkaconf.Credentials
}

// LagSource measures the backlog of a consumer group on a topic.
type LagSource interface {
	Lag(ctx context.Context, t LagTarget) (lag.Result, error)
}

// defaultClients is shared by every KafkaLagSource without a cache of its own.
var defaultClients = &lag.ClientCache{}

// busyMeasurements holds the measurements under way, by cluster, group and topic.
var busyMeasurements sync.Map

// KafkaLagSource measures through one cached sarama client per Kafka
// cluster and identity.
type KafkaLagSource struct {
	// Timeout bounds one measurement (default 10s).
	Timeout time.Duration
	// Clients caches the Kafka clients; a process-wide cache when nil.
	Clients *lag.ClientCache
}

// Lag implements LagSource.
func (k KafkaLagSource) Lag(ctx context.Context, t LagTarget) (lag.Result, error) {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	clients := k.Clients
	if clients == nil {
		clients = defaultClients
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := t.Options
	opts.DialTimeout = timeout / 3
	cfg, err := kafkaconf.New(opts, t.Credentials)
	if err != nil {
		return lag.Result{}, err
	}
	cfg.Metadata.Retry.Max = 1
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Metadata.Full = false
	settings, _ := json.Marshal(opts)
	cr := t.Credentials
	key := lag.Key(t.Brokers, string(settings), cr.CA, cr.Cert, cr.Key, []byte(cr.Username), []byte(cr.Password))

	// One measurement per pipeline target at a time: one that outlived
	// its timeout (a hanging broker) must end before the next starts.
	busyKey := key + "\x00" + t.Group + "\x00" + t.Topic
	if _, running := busyMeasurements.LoadOrStore(busyKey, true); running {
		return lag.Result{}, fmt.Errorf("measuring backlog: the previous measurement against %s has not returned yet", strings.Join(t.Brokers, ","))
	}
	type result struct {
		r   lag.Result
		err error
	}
	done := make(chan result, 1)
	// sarama calls do not take a context: run them aside so that the
	// timeout holds even when a broker does not answer.
	go func() {
		defer busyMeasurements.Delete(busyKey)
		c, release, err := clients.Get(key, t.Brokers, cfg)
		if err != nil {
			done <- result{err: fmt.Errorf("connecting to %s: %w", strings.Join(t.Brokers, ","), err)}
			return
		}
		r, err := lag.Measure(ctx, c, t.Group, t.Topic, t.FromEarliest)
		release()
		if err != nil && isBrokenClient(err) {
			clients.Invalidate(key)
		}
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-ctx.Done():
		return lag.Result{}, fmt.Errorf("measuring backlog: %w", ctx.Err())
	}
}

func isBrokenClient(err error) bool {
	return strings.Contains(err.Error(), sarama.ErrClosedClient.Error()) || strings.Contains(err.Error(), sarama.ErrOutOfBrokers.Error())
}

// lagReading is the last measurement of one pipeline.
type lagReading struct {
	res lag.Result
	err error
	at  time.Time
	// rate is answers per second between the last two good measurements;
	// 0 when unknown.
	rate float64
	// drain estimates the time to answer the backlog at rate; nil when
	// unknown.
	drain *time.Duration
}

// lagPoller measures each pipeline's backlog in a goroutine of its own,
// off the reconcile path, and wakes the pipeline's reconcile through a
// channel source when a measurement changes. One unreachable cluster
// delays only its own pipelines.
type lagPoller struct {
	source LagSource
	events chan event.GenericEvent
	// after runs after each measurement in the pipeline's goroutine (pod
	// deletion costs); may be nil.
	after func(ctx context.Context, key types.NamespacedName)

	baseCtx context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	entries map[types.NamespacedName]*pollEntry
}

type pollEntry struct {
	fingerprint string
	cancel      context.CancelFunc
	reading     *lagReading
	// prevSettled/prevAt are the last good measurement's settled count.
	prevSettled int64
	prevAt      time.Time
}

func newLagPoller(source LagSource) *lagPoller {
	ctx, cancel := context.WithCancel(context.Background())
	return &lagPoller{
		source: source, events: make(chan event.GenericEvent, 64),
		baseCtx: ctx, stop: cancel, entries: map[types.NamespacedName]*pollEntry{},
	}
}

// Start implements manager.Runnable: it runs until ctx ends, then stops
// every poll.
func (lp *lagPoller) Start(ctx context.Context) error {
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			lp.stop()
			lp.wg.Wait()
			return nil
		case <-sweep.C:
			defaultClients.Sweep()
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader measures.
func (lp *lagPoller) NeedLeaderElection() bool { return true }

// ensure starts (or restarts, when the target changed) the poll of key.
func (lp *lagPoller) ensure(key types.NamespacedName, t LagTarget, interval time.Duration) {
	raw, _ := json.Marshal(struct {
		T LagTarget
		I time.Duration
	}{t, interval})
	sum := sha256.Sum256(raw)
	fp := hex.EncodeToString(sum[:])
	lp.mu.Lock()
	defer lp.mu.Unlock()
	e := lp.entries[key]
	if e != nil && e.fingerprint == fp {
		return
	}
	if e == nil {
		e = &pollEntry{}
		lp.entries[key] = e
	} else if e.cancel != nil {
		e.cancel()
	}
	ctx, cancel := context.WithCancel(lp.baseCtx)
	e.fingerprint, e.cancel = fp, cancel
	lp.wg.Add(1)
	go lp.run(ctx, key, t, interval)
}

// forget stops the poll of key and drops its readings.
func (lp *lagPoller) forget(key types.NamespacedName) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if e := lp.entries[key]; e != nil {
		if e.cancel != nil {
			e.cancel()
		}
		delete(lp.entries, key)
	}
}

// latest is the last reading of key, nil before the first.
func (lp *lagPoller) latest(key types.NamespacedName) *lagReading {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if e := lp.entries[key]; e != nil {
		return e.reading
	}
	return nil
}

func (lp *lagPoller) run(ctx context.Context, key types.NamespacedName, t LagTarget, interval time.Duration) {
	defer lp.wg.Done()
	logger := log.FromContext(ctx).WithValues("portalpipeline", key)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		mctx, cancel := context.WithTimeout(ctx, min(interval, 10*time.Second))
		res, err := lp.source.Lag(mctx, t)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			logger.V(1).Info("Measuring backlog failed", "error", err.Error())
		}
		if lp.record(key, res, err, time.Now()) {
			select {
			case lp.events <- event.GenericEvent{Object: &v1.PortalPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
			case <-ctx.Done():
				return
			}
		}
		if lp.after != nil {
			lp.after(ctx, key)
		}
		timer.Reset(interval)
	}
}

// record stores a measurement and reports whether it differs from the
// previous one (so that the pipeline is reconciled).
func (lp *lagPoller) record(key types.NamespacedName, res lag.Result, err error, now time.Time) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	e := lp.entries[key]
	if e == nil {
		return false
	}
	r := &lagReading{res: res, err: err, at: now}
	if err == nil {
		if !e.prevAt.IsZero() && now.After(e.prevAt) && res.Settled >= e.prevSettled {
			r.rate = float64(res.Settled-e.prevSettled) / now.Sub(e.prevAt).Seconds()
		} else if e.reading != nil {
			r.rate = e.reading.rate
		}
		if r.rate > 0 {
			d := time.Duration(float64(res.Backlog) / r.rate * float64(time.Second)).Round(time.Second)
			r.drain = &d
		}
		e.prevSettled, e.prevAt = res.Settled, now
	} else if e.reading != nil {
		// Keep the last known figures with the new error.
		r.res, r.rate, r.drain = e.reading.res, e.reading.rate, e.reading.drain
	}
	prev := e.reading
	e.reading = r
	if prev == nil {
		return true
	}
	a, b := prev.res, r.res
	return (prev.err == nil) != (err == nil) ||
		(err != nil && prev.err.Error() != err.Error()) ||
		a.Lag != b.Lag || a.Backlog != b.Backlog || a.Partitions != b.Partitions ||
		a.HandedOver != b.HandedOver || a.Unconsumed != b.Unconsumed
}

// lagTarget is the measurement a pipeline needs, with the credentials
// read from its Secrets (files maps mounted file to content).
func lagTarget(p *v1.PortalPipeline, files map[string][]byte) LagTarget {
	ks := p.Spec.Kafka
	opts := kafkaconf.Options{Version: ks.Version, ClientID: "kafkasend-operator", TLS: ks.TLS != nil}
	cr := kafkaconf.Credentials{CA: files[fileKafkaCA], Cert: files[fileKafkaCert], Key: files[fileKafkaKey]}
	if s := ks.SASL; s != nil {
		opts.SASLMechanism = string(s.Mechanism)
		cr.Username = s.Username
		if s.UsernameSecretRef != nil {
			cr.Username = strings.TrimRight(string(files[fileSASLUsername]), "\r\n")
		}
		cr.Password = strings.TrimRight(string(files[fileSASLPassword]), "\r\n")
	}
	return LagTarget{
		Brokers: append([]string(nil), ks.BootstrapServers...),
		Group:   ConsumerGroup(p), Topic: p.Spec.Topics.Requests,
		FromEarliest: ks.InitialOffset != v1.InitialOffsetLatest,
		Options:      opts, Credentials: cr,
	}
}
