// Package portal_test runs the portal worker against a Kafka broker (Apache
// Kafka under make test, else kfake) and loopback HTTP upstreams, and checks
// what a requester would notice: latency, exactly one answer per job,
// byte-exact bodies, precise errors.
package portal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/testutil/jobtest"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
	"kafkasend.io/kafkasend/pkg/wire"
)

// upstream is a loopback API whose latency a job picks by path:
// /slow/... takes slow, everything else fast. It echoes the body and counts
// calls per Idempotency-Key.
type upstream struct {
	*httptest.Server
	slow, fast time.Duration
	mu         sync.Mutex
	calls      map[string]int
	active     atomic.Int32
}

func newUpstream(t *testing.T, slow, fast time.Duration) *upstream {
	u := &upstream{slow: slow, fast: fast, calls: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.calls[r.Header.Get("Idempotency-Key")]++
		u.mu.Unlock()
		u.active.Add(1)
		defer u.active.Add(-1)
		d := u.fast
		if strings.Contains(r.URL.Path, "/slow/") {
			d = u.slow
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = w.Write(body)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) callsOf(id string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[id]
}

func (u *upstream) totalCalls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.calls {
		n += c
	}
	return n
}

// env is one pipeline: topics, an upstream, a requester and a collector.
type env struct {
	brokers  []string
	cfg      config.Config
	up       *upstream
	req      *jobtest.Requester
	col      *jobtest.Collector
	dlq      string
	requests string
}

func newEnv(t *testing.T, slow, fast time.Duration, mutate func(*config.Config)) *env {
	brokers := kafkatest.Brokers(t)
	e := &env{brokers: brokers, up: newUpstream(t, slow, fast)}
	e.requests = kafkatest.CreateTopic(t, brokers, 3)
	replies := kafkatest.CreateTopic(t, brokers, 3)
	e.dlq = kafkatest.CreateTopic(t, brokers, 1)
	c := config.Default()
	c.Kafka.Brokers = brokers
	c.Kafka.ConsumerGroup = "g-" + e.requests
	c.Kafka.Version = kafkatest.SaramaConfig().Version.String()
	c.Topics = config.Topics{Requests: e.requests, Replies: replies, DeadLetter: e.dlq}
	c.Upstream.BaseURL = e.up.URL + "/api"
	c.Upstream.AllowInsecureHTTP = true
	c.Upstream.MaxRequestBytes = 80 << 20
	c.Concurrency.MaxBytes = 512 << 20
	c.Timeouts.ChunkAssembly = metav1.Duration{Duration: 3 * time.Second}
	c.Timeouts.Drain = metav1.Duration{Duration: 15 * time.Second}
	if mutate != nil {
		mutate(&c)
	}
	e.cfg = c
	e.req = jobtest.NewRequester(t, brokers, e.requests, c.Kafka.MaxMessageBytes)
	e.col = jobtest.NewCollector(t, brokers, replies)
	return e
}

// start runs a portal in this process until the test ends.
func (e *env) start(t *testing.T) *portal.Portal {
	t.Helper()
	p, err := portal.New(e.cfg, portal.Options{Log: quietLog(t), SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatalf("portal: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("portal stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("portal did not stop within 30s")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("portal did not join its group within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func quietLog(t *testing.T) logr.Logger {
	if testing.Verbose() {
		return testr.New(t)
	}
	return logr.Discard()
}

func job(path string, body []byte) *wire.Request {
	return &wire.Request{
		ID: wire.NewJobID(), Method: http.MethodPost, Path: path, Body: body,
		Header: http.Header{"Content-Type": {"application/octet-stream"}}, ReplyPartition: wire.NoPartition,
	}
}

func TestFastJobsAreNotHeldBehindSlowOnes(t *testing.T) {
	e := newEnv(t, 10*time.Second, 20*time.Millisecond, func(c *config.Config) { c.Concurrency.MaxInFlight = 100 })
	e.start(t)

	type sent struct {
		id   string
		at   time.Time
		slow bool
	}
	var all []sent
	for i := range 520 {
		slow := i%26 == 0 // 20 slow jobs spread among 500 fast ones
		path := fmt.Sprintf("/fast/%d", i)
		if slow {
			path = fmt.Sprintf("/slow/%d", i)
		}
		j := job(path, []byte(path))
		at := time.Now()
		if err := e.req.Send(j); err != nil {
			t.Fatalf("sending job %d: %v", i, err)
		}
		all = append(all, sent{j.ID, at, slow})
	}
	ids := make([]string, len(all))
	for i, s := range all {
		ids[i] = s.id
	}
	if missing := e.col.Wait(ids, 60*time.Second); len(missing) > 0 {
		t.Fatalf("%d of %d jobs got no response, e.g. %s", len(missing), len(ids), missing[0])
	}
	var slowest time.Duration
	late := 0
	for _, s := range all {
		a, _ := e.col.Get(s.id)
		if a.Response.Status != http.StatusOK || a.Response.ErrorKind != wire.ErrorNone {
			t.Errorf("job %s: status %d kind %q: %s", s.id, a.Response.Status, a.Response.ErrorKind, a.Response.ErrorMessage)
		}
		d := a.At.Sub(s.at)
		if s.slow {
			if d < 10*time.Second {
				t.Errorf("slow job answered after %v, before its upstream could", d)
			}
			continue
		}
		slowest = max(slowest, d)
		if d > time.Second {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d of 500 fast jobs took over 1s (slowest %v) while slow jobs were in flight", late, slowest)
	}
	t.Logf("slowest fast job: %v (broker %s)", slowest, kafkatest.Kind())
	if d := e.col.Duplicates(); len(d) > 0 {
		t.Errorf("jobs answered twice: %v", d)
	}
	if n := e.up.totalCalls(); n != 520 {
		t.Errorf("upstream called %d times for 520 jobs", n)
	}
}

func TestLargeInterleavedBodiesRoundTripExactly(t *testing.T) {
	e := newEnv(t, 0, 0, nil)
	e.start(t)
	sizes := []int{1 << 10, 100 << 10, 1 << 20, 5<<20 + 7, 16 << 20, 64 << 20}
	bodies := map[string][]byte{}
	var ids []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := make(chan error, len(sizes))
	for _, n := range sizes {
		body := make([]byte, n)
		_, _ = rand.Read(body)
		j := job(fmt.Sprintf("/echo/%d", n), body)
		mu.Lock()
		bodies[j.ID] = body
		ids = append(ids, j.ID)
		mu.Unlock()
		wg.Add(1)
		go func() { // concurrent sends interleave the chunks of the jobs
			defer wg.Done()
			if err := e.req.Send(j); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sending: %v", err)
	}
	if missing := e.col.Wait(ids, 90*time.Second); len(missing) > 0 {
		t.Fatalf("no response for %d jobs", len(missing))
	}
	for id, body := range bodies {
		a, _ := e.col.Get(id)
		if a.Response.ErrorKind != wire.ErrorNone {
			t.Errorf("%d-byte job: %s: %s", len(body), a.Response.ErrorKind, a.Response.ErrorMessage)
			continue
		}
		if !bytes.Equal(a.Response.Body, body) {
			t.Errorf("%d-byte job: response body differs (%d bytes back)", len(body), len(a.Response.Body))
		}
	}
}

func TestBadInputGetsPreciseAnswers(t *testing.T) {
	e := newEnv(t, 0, 0, func(c *config.Config) {
		c.Upstream.MaxRequestBytes = 1 << 20
		c.Kafka.MaxMessageBytes = 64 << 10
		// The alternative reply topic below is named after the test.
		c.Topics.AllowedReplyTopicPrefixes = []string{"TestBadInputGetsPreciseAnswers-"}
	})
	e.start(t)
	body := make([]byte, 200<<10) // 4 chunks of at most 64 KiB
	_, _ = rand.Read(body)
	chunks := func(j *wire.Request) []*sarama.ProducerMessage {
		msgs, err := wire.RequestMessages(e.requests, wire.NoPartition, j, e.cfg.Kafka.MaxMessageBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) < 3 {
			t.Fatalf("want several chunks, got %d", len(msgs))
		}
		return msgs
	}

	corrupt := job("/corrupt", body)
	msgs := chunks(corrupt)
	data := append([]byte(nil), msgs[1].Value.(sarama.ByteEncoder)...)
	data[10] ^= 0xff
	msgs[1].Value = sarama.ByteEncoder(data)
	if err := e.req.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}

	// Jobs rejected before they are whole are answered on the reply topic
	// their requester named, read from their first chunk.
	alt := kafkatest.CreateTopic(t, e.brokers, 2)
	altCol := jobtest.NewCollector(t, e.brokers, alt)

	missing := job("/missing", body)
	missing.ReplyTopic, missing.ReplyPartition = alt, 1
	msgs = chunks(missing)
	if err := e.req.SendMessages(append(msgs[:1:1], msgs[2:]...)); err != nil {
		t.Fatal(err)
	}

	oversize := job("/oversize", make([]byte, 2<<20))
	oversize.ReplyTopic = alt
	if err := e.req.Send(oversize); err != nil {
		t.Fatal(err)
	}

	// A message with no kafkasend headers cannot be tied to any job.
	garbage := &sarama.ProducerMessage{Topic: e.requests, Key: sarama.StringEncoder("not-a-job"), Value: sarama.StringEncoder("hello")}
	if err := e.req.SendMessages([]*sarama.ProducerMessage{garbage}); err != nil {
		t.Fatal(err)
	}

	good := job("/good", body)
	if err := e.req.Send(good); err != nil {
		t.Fatal(err)
	}

	if m := e.col.Wait([]string{corrupt.ID, good.ID}, 30*time.Second); len(m) > 0 {
		t.Fatalf("no response for %v", m)
	}
	if m := altCol.Wait([]string{missing.ID, oversize.ID}, 30*time.Second); len(m) > 0 {
		t.Fatalf("no response on the requested reply topic for %v", m)
	}
	want := map[string]wire.ErrorKind{
		corrupt.ID: wire.ErrorMalformed, missing.ID: wire.ErrorIncomplete,
		oversize.ID: wire.ErrorTooLarge, good.ID: wire.ErrorNone,
	}
	for id, kind := range want {
		a, ok := e.col.Get(id)
		if !ok {
			a, _ = altCol.Get(id)
		}
		if a.Response.ErrorKind != kind {
			t.Errorf("job %s: kind %q (%s), want %q", id, a.Response.ErrorKind, a.Response.ErrorMessage, kind)
		}
		if kind != wire.ErrorNone && e.up.callsOf(id) != 0 {
			t.Errorf("job %s (%s) reached the upstream", id, kind)
		}
	}
	if a, _ := altCol.Get(missing.ID); !strings.Contains(a.Response.ErrorMessage, "1") {
		t.Errorf("incomplete answer should name the missing chunk: %q", a.Response.ErrorMessage)
	}

	// The unattributable message is in the dead-letter topic, with a reason.
	dl := readOne(t, e.brokers, e.dlq)
	if string(dl.Value) != "hello" {
		t.Errorf("dead letter value %q", dl.Value)
	}
	var reason string
	for _, h := range dl.Headers {
		if string(h.Key) == portal.HeaderDLQReason {
			reason = string(h.Value)
		}
	}
	if reason == "" {
		t.Errorf("dead letter without %s header", portal.HeaderDLQReason)
	}
	t.Logf("dead-letter reason: %s", reason)
	// Wait a moment for stray second answers.
	time.Sleep(time.Second)
	if d := e.col.Duplicates(); len(d) > 0 {
		t.Errorf("jobs answered twice: %v", d)
	}
}

// readOne reads the first message of a one-partition topic.
func readOne(t *testing.T, brokers []string, topic string) *sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, kafkatest.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return m
	case <-time.After(20 * time.Second):
		t.Fatalf("nothing in %s", topic)
		return nil
	}
}

// A requester's mistakes in where to answer never stall the worker: with 4
// slots, 50 jobs naming a reply partition out of range and 10 naming a
// topic that does not exist are dead-lettered without a call, a job naming
// a topic the pipeline does not allow is refused on the replies topic, and
// a good job sent after all of them is answered at once.
func TestBadReplyTargetsNeverStallTheWorker(t *testing.T) {
	missingPrefix := "TestBadReplyTargetsNeverStallTheWorker-missing-"
	e := newEnv(t, 0, 0, func(c *config.Config) {
		c.Concurrency.MaxInFlight = 4
		c.Topics.AllowedReplyTopicPrefixes = []string{missingPrefix}
	})
	e.start(t)
	replies := e.cfg.Topics.Replies
	var bad []string
	for i := range 60 {
		j := job(fmt.Sprintf("/fast/bad-%d", i), []byte("x"))
		j.ReplyTopic, j.ReplyPartition = replies, 999
		if i >= 50 {
			j.ReplyTopic, j.ReplyPartition = missingPrefix+strconv.Itoa(i), 0
		}
		if err := e.req.Send(j); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, j.ID)
	}
	refused := job("/fast/refused", []byte("x"))
	refused.ReplyTopic = "someone-elses-topic"
	if err := e.req.Send(refused); err != nil {
		t.Fatal(err)
	}
	good := job("/fast/good", []byte("x"))
	sent := time.Now()
	if err := e.req.Send(good); err != nil {
		t.Fatal(err)
	}
	if m := e.col.Wait([]string{good.ID, refused.ID}, 5*time.Second); len(m) > 0 {
		t.Fatalf("not answered within 5 s behind 60 jobs with bad reply targets: %v", m)
	}
	t.Logf("good job answered %v after it was sent", time.Since(sent).Round(time.Millisecond))
	if a, _ := e.col.Get(refused.ID); a.Response.ErrorKind != wire.ErrorRejected || a.Response.Status != http.StatusForbidden ||
		!strings.Contains(a.Response.ErrorMessage, "someone-elses-topic") {
		t.Errorf("refused reply topic answered %d %s %q", a.Response.Status, a.Response.ErrorKind, a.Response.ErrorMessage)
	}
	for _, id := range append(bad, refused.ID) {
		if n := e.up.callsOf(id); n != 0 {
			t.Errorf("job %s with a bad reply target reached the upstream %d times", id, n)
		}
	}
	// Every bad job is in the dead-letter topic, with its reason.
	reasons := readAll(t, e.brokers, e.dlq, len(bad), 20*time.Second)
	var outOfRange, missing int
	for _, r := range reasons {
		switch {
		case strings.Contains(r, "partition 999 out of range"):
			outOfRange++
		case strings.Contains(r, "does not exist"):
			missing++
		}
	}
	if outOfRange != 50 || missing != 10 {
		t.Errorf("dead letters: %d out of range, %d missing topic, want 50 and 10; reasons: %q", outOfRange, missing, reasons[:min(3, len(reasons))])
	}
}

// readAll reads n records of a one-partition topic and returns their
// dead-letter reasons.
func readAll(t *testing.T, brokers []string, topic string, n int, timeout time.Duration) []string {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, kafkatest.SaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []string
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			reason := ""
			for _, h := range m.Headers {
				if string(h.Key) == portal.HeaderDLQReason {
					reason = string(h.Value)
				}
			}
			out = append(out, reason)
		case <-deadline:
			t.Fatalf("%d of %d dead letters within %v", len(out), n, timeout)
		}
	}
	return out
}

// Chunk-header errors of a record whose job ID can be read are answered,
// with the status of their kind, not dead-lettered: the requester does not
// wait for its deadline.
func TestChunkHeaderErrorsAreAnswered(t *testing.T) {
	e := newEnv(t, 0, 0, func(c *config.Config) { c.Upstream.MaxRequestBytes = 1 << 20 })
	e.start(t)
	set := func(m *sarama.ProducerMessage, key, value string) {
		for i := range m.Headers {
			if string(m.Headers[i].Key) == key {
				m.Headers[i].Value = []byte(value)
			}
		}
	}
	cases := map[string]func(m *sarama.ProducerMessage){
		"no chunks":       func(m *sarama.ProducerMessage) { set(m, wire.HeaderChunks, "0") },
		"index past end":  func(m *sarama.ProducerMessage) { set(m, wire.HeaderChunk, "1") },
		"size mismatch":   func(m *sarama.ProducerMessage) { set(m, wire.HeaderSize, "999") },
		"unknown version": func(m *sarama.ProducerMessage) { set(m, wire.HeaderVersion, "2") },
	}
	ids := map[string]string{}
	for name, mutate := range cases {
		j := job("/fast/"+strings.ReplaceAll(name, " ", "-"), []byte("payload"))
		msgs, err := wire.RequestMessages(e.requests, wire.NoPartition, j, e.cfg.Kafka.MaxMessageBytes)
		if err != nil {
			t.Fatal(err)
		}
		mutate(msgs[0])
		if err := e.req.SendMessages(msgs); err != nil {
			t.Fatal(err)
		}
		ids[j.ID] = name
	}
	oversize := job("/fast/oversize", make([]byte, 2<<20))
	if err := e.req.Send(oversize); err != nil {
		t.Fatal(err)
	}
	all := []string{oversize.ID}
	for id := range ids {
		all = append(all, id)
	}
	if m := e.col.Wait(all, 20*time.Second); len(m) > 0 {
		t.Fatalf("not answered: %v", m)
	}
	for id, name := range ids {
		a, _ := e.col.Get(id)
		if a.Response.ErrorKind != wire.ErrorMalformed || a.Response.Status != http.StatusBadRequest || a.Response.ErrorMessage == "" {
			t.Errorf("%s: answered %d %s %q, want 400 malformed with a reason", name, a.Response.Status, a.Response.ErrorKind, a.Response.ErrorMessage)
		}
		if e.up.callsOf(id) != 0 {
			t.Errorf("%s reached the upstream", name)
		}
	}
	if a, _ := e.col.Get(oversize.ID); a.Response.ErrorKind != wire.ErrorTooLarge || a.Response.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize job answered %d %s, want 413 too_large", a.Response.Status, a.Response.ErrorKind)
	}
}
