package portal

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"kafkasend.io/kafkasend/internal/portal/assembler"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/offsets"
	"kafkasend.io/kafkasend/pkg/wire"
)

// The hand-over state machine, without Kafka: a partition released with
// jobs running, its next owner skipping them, renewals, completions, a
// lease lapsing, a second move.

const testTopic = "req"

// testConfig is a portal configuration that reaches nothing.
func testConfig() config.Config {
	c := config.Default()
	c.Kafka.Brokers = []string{"127.0.0.1:1"}
	c.Kafka.ConsumerGroup = "g"
	c.Topics = config.Topics{Requests: testTopic, Replies: "rep"}
	c.Upstream.BaseURL = "http://127.0.0.1:1/"
	c.Upstream.AllowInsecureHTTP = true
	return c
}

func testPortal(t *testing.T, instance string) *Portal {
	t.Helper()
	p, err := New(testConfig(), Options{Log: logr.Discard(), Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testPartition(p *Portal, start int64, inherited offsets.Commit) *partition {
	ctx, cancel := context.WithCancel(context.Background())
	pt := &partition{
		p: p, topic: testTopic, id: 0, label: "0", ctx: ctx, cancel: cancel, qwake: make(chan struct{}, 1),
		start: start, lastRead: start - 1, leases: map[int64]*lease{}, parked: map[int64]*parkedJob{},
		flights: map[*flight]struct{}{}, lapsed: map[int64]*flight{},
	}
	pt.adopt(inherited)
	return pt
}

// fakeSession records what the portal marks.
type fakeSession struct {
	mu    sync.Mutex
	marks []mark
}

func (s *fakeSession) Claims() map[string][]int32 { return map[string][]int32{testTopic: {0}} }
func (s *fakeSession) MemberID() string           { return "m" }
func (s *fakeSession) GenerationID() int32        { return 1 }
func (s *fakeSession) MarkOffset(_ string, _ int32, offset int64, md string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks = append(s.marks, mark{offset, md})
}
func (s *fakeSession) Commit() {}
func (s *fakeSession) ResetOffset(_ string, _ int32, offset int64, md string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks = append(s.marks, mark{offset, md})
}
func (s *fakeSession) MarkMessage(*sarama.ConsumerMessage, string) {}
func (s *fakeSession) Context() context.Context                    { return context.Background() }

func (s *fakeSession) last(t *testing.T) (int64, offsets.Commit) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.marks) == 0 {
		t.Fatal("nothing marked")
	}
	m := s.marks[len(s.marks)-1]
	c, err := offsets.DecodeCommit(m.next, m.md)
	if err != nil {
		t.Fatal(err)
	}
	return m.next, c
}

// requestRecord is a single-chunk job at offset.
func requestRecord(t *testing.T, id string, offset int64) *sarama.ConsumerMessage {
	t.Helper()
	r := wire.NewRequest(http.MethodGet, "/slow")
	r.ID = id
	msgs, err := wire.RequestMessages(testTopic, 0, r, 900<<10)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	return consumerMessage(m, offset)
}

func consumerMessage(m *sarama.ProducerMessage, offset int64) *sarama.ConsumerMessage {
	key, _ := m.Key.Encode()
	value, _ := m.Value.Encode()
	hs := make([]*sarama.RecordHeader, len(m.Headers))
	for i := range m.Headers {
		hs[i] = &m.Headers[i]
	}
	return &sarama.ConsumerMessage{Topic: testTopic, Partition: 0, Offset: offset, Key: key, Value: value, Headers: hs}
}

// controlAt turns a control record queued by h into a consumed record.
func controlAt(t *testing.T, m *sarama.ProducerMessage, offset int64) *sarama.ConsumerMessage {
	t.Helper()
	return consumerMessage(m, offset)
}

func queued(h *handover) []*sarama.ProducerMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queue
	h.queue = nil
	return q
}

func recordOf(t *testing.T, m *sarama.ProducerMessage) controlRecord {
	t.Helper()
	var c controlRecord
	b, _ := m.Value.Encode()
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHandOverLifecycle(t *testing.T) {
	a := testPortal(t, "worker-a")
	ptA := testPartition(a, 100, offsets.Commit{})
	// Worker A read 100-104; the jobs at 100 and 102 still run, the others
	// were answered.
	flights := map[int64]*flight{}
	for o := int64(100); o <= 104; o++ {
		if err := ptA.tracker.Track(o); err != nil {
			t.Fatal(err)
		}
		ptA.lastRead = o
		if o == 100 || o == 102 {
			if !a.slots.TryAcquire(1) {
				t.Fatal("no slot")
			}
			flights[o] = a.startFlight(ptA, assembler.Result{JobID: "job-" + string(rune('a'+o-100)), Positions: []position{{Topic: testTopic, Offset: o}}}, 0, "")
			continue
		}
		ptA.tracker.Done(o)
	}

	// Released: the commit point stays at 100, the answered offsets and a
	// lease on the running jobs are recorded.
	sA := &fakeSession{}
	before := time.Now()
	ptA.release(sA)
	next, c := sA.last(t)
	if next != 100 {
		t.Fatalf("commit point %d, want 100", next)
	}
	if want := []offsets.Range{{First: 101, Last: 101}, {First: 103, Last: 104}}; !reflect.DeepEqual(c.Done, want) {
		t.Errorf("done %v, want %v", c.Done, want)
	}
	if len(c.Leases) != 1 || c.Leases[0].Holder != "worker-a" || !reflect.DeepEqual(c.Leases[0].Offsets, []offsets.Range{{First: 100, Last: 100}, {First: 102, Last: 102}}) {
		t.Fatalf("leases %+v", c.Leases)
	}
	if exp := c.Leases[0].Expires; exp.Before(before.Add(14*time.Second)) || exp.After(time.Now().Add(16*time.Second)) {
		t.Errorf("lease expires %v, want about 15 s from now", exp)
	}
	if a.handed.pending() != 2 {
		t.Errorf("%d jobs handed over, want 2", a.handed.pending())
	}

	// Worker B owns the partition next: it reads the same records and runs
	// none of them.
	b := testPortal(t, "worker-b")
	var lapsed []string
	b.runLapsed = func(pt *partition, res assembler.Result, from string) *flight {
		lapsed = append(lapsed, res.JobID+" from "+from)
		if !b.slots.TryAcquire(1) {
			t.Fatal("no slot")
		}
		return b.startFlight(pt, res, 0, from)
	}
	ptB := testPartition(b, next, c)
	for o := int64(100); o <= 104; o++ {
		if err := ptB.handle(requestRecord(t, "job-"+string(rune('a'+o-100)), o)); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.inflight) != 0 {
		t.Fatalf("worker B started %d jobs; handed-over and answered jobs must not run again", len(b.inflight))
	}
	if len(ptB.parked) != 2 {
		t.Fatalf("%d jobs parked, want 2", len(ptB.parked))
	}

	// A renews its lease; B's commit records the new expiry.
	a.handed.renew(time.Now().Add(time.Hour))
	renew := queued(a.handed)
	if len(renew) != 1 || recordOf(t, renew[0]).Op != opRenew {
		t.Fatalf("renew records: %d", len(renew))
	}
	if err := ptB.handle(controlAt(t, renew[0], 105)); err != nil {
		t.Fatal(err)
	}
	sB := &fakeSession{}
	ptB.markCommit(sB)
	next, c = sB.last(t)
	if next != 100 || len(c.Leases) != 1 || c.Leases[0].Expires.Before(time.Now().Add(time.Hour)) {
		t.Fatalf("after renewal: commit %d, leases %+v", next, c.Leases)
	}

	// A answers the job at 100: its done record lets B's commit pass it.
	a.release(flights[100], true)
	done := queued(a.handed)
	if len(done) != 1 || recordOf(t, done[0]).Op != opDone {
		t.Fatalf("done records: %d", len(done))
	}
	if err := ptB.handle(controlAt(t, done[0], 106)); err != nil {
		t.Fatal(err)
	}
	ptB.markCommit(sB)
	if next, _ = sB.last(t); next != 102 {
		t.Fatalf("commit point %d after the done record, want 102", next)
	}

	// The partition moves on to C before A finishes 102: B's final commit
	// keeps A's lease with its latest expiry.
	ptB.release(sB)
	next, c = sB.last(t)
	if next != 102 || len(c.Leases) != 1 || c.Leases[0].Holder != "worker-a" ||
		!reflect.DeepEqual(c.Leases[0].Offsets, []offsets.Range{{First: 102, Last: 102}}) || c.Leases[0].Expires.Before(time.Now().Add(time.Hour)) {
		t.Fatalf("second move: commit %d, leases %+v", next, c.Leases)
	}
	if len(lapsed) != 0 {
		t.Fatalf("ran %v while the lease lived", lapsed)
	}

	// On C, A's lease lapses (A died; its last renewal was long ago): C
	// runs the job once, after reading the partition to its end.
	cw := testPortal(t, "worker-c")
	cw.runLapsed = b.runLapsed
	cw.newestOffset = func(string, int32) (int64, error) { return 107, nil }
	c.Leases[0].Expires = time.Now().Add(-time.Minute)
	ptC := testPartition(cw, next, c)
	for o := int64(102); o <= 104; o++ {
		if err := ptC.handle(requestRecord(t, "job-"+string(rune('a'+o-100)), o)); err != nil {
			t.Fatal(err)
		}
	}
	ptC.checkLeases()
	if len(lapsed) != 0 {
		t.Fatalf("ran %v before reading the partition to its end", lapsed)
	}
	for o := int64(105); o <= 106; o++ { // the old renew and done records
		m := renew[0]
		if o == 106 {
			m = done[0]
		}
		if err := ptC.handle(controlAt(t, m, o)); err != nil {
			t.Fatal(err)
		}
	}
	ptC.checkLeases()
	if !reflect.DeepEqual(lapsed, []string{"job-c from worker-a"}) {
		t.Fatalf("lapsed runs %v, want job-c once", lapsed)
	}
	ptC.checkLeases()
	if len(lapsed) != 1 {
		t.Fatalf("ran the lapsed job %d times", len(lapsed))
	}

	// A was only slow: its late done record stops C's copy, which then
	// gives no second answer, and the offset is done.
	a.release(flights[102], true)
	late := queued(a.handed)
	if len(late) != 1 {
		t.Fatalf("done records: %d", len(late))
	}
	if err := ptC.handle(controlAt(t, late[0], 107)); err != nil {
		t.Fatal(err)
	}
	var cf *flight
	for f := range ptC.flights {
		cf = f
	}
	if cf == nil || !cf.abandoned {
		t.Fatalf("C's copy of the job was not stopped: %+v", cf)
	}
	sC := &fakeSession{}
	ptC.markCommit(sC)
	if next, c = sC.last(t); next != 108 || !c.Empty() {
		t.Fatalf("C commits %d %+v, want 108 and nothing above", next, c)
	}
}

// A fresh owner that dies before reading what it inherited must not erase
// it: its commits carry the inherited answered offsets until it reads past
// them, and the commit point moves over answered offsets at its front.
func TestInheritedAnsweredOffsetsSurviveFreshOwners(t *testing.T) {
	p := testPortal(t, "w")
	inherited := offsets.Commit{Done: []offsets.Range{{First: 11, Last: 20}, {First: 30, Last: 30}}}
	pt := testPartition(p, 10, inherited)
	s := &fakeSession{}
	pt.markCommit(s)
	next, c := s.last(t)
	if next != 10 || !reflect.DeepEqual(c.Done, inherited.Done) {
		t.Fatalf("fresh owner commits %d %+v, want 10 with the inherited list", next, c.Done)
	}
	// It reads 10 (a record it answers at once) and nothing else.
	if err := pt.handle(&sarama.ConsumerMessage{Topic: testTopic, Offset: 10, Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	pt.markCommit(s)
	next, c = s.last(t)
	if next != 21 || !reflect.DeepEqual(c.Done, []offsets.Range{{First: 30, Last: 30}}) {
		t.Fatalf("after reading 10: commit %d %+v, want 21 and [30]", next, c.Done)
	}
	// Reading an inherited answered offset skips it.
	for o := int64(11); o <= 12; o++ {
		if err := pt.handle(requestRecord(t, "answered", o)); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.inflight) != 0 {
		t.Fatal("an answered job ran again")
	}
}

func TestControlRecordsRefuseDamage(t *testing.T) {
	good := controlMessage(nil, testTopic, 0, controlRecord{Op: opDone, Holder: "w", Offsets: [][2]int64{{1, 2}}})
	if _, rs, err := parseControl(consumerMessage(good, 5), nil); err != nil || !reflect.DeepEqual(rs, []offsets.Range{{First: 1, Last: 2}}) {
		t.Fatalf("good record: %v %v", rs, err)
	}
	for name, value := range map[string]string{
		"not json":      "{",
		"unknown op":    `{"op":"steal","holder":"w","offsets":[[1,1]]}`,
		"no holder":     `{"op":"done","offsets":[[1,1]]}`,
		"no offsets":    `{"op":"done","holder":"w","offsets":[]}`,
		"reversed":      `{"op":"done","holder":"w","offsets":[[5,1]]}`,
		"negative":      `{"op":"done","holder":"w","offsets":[[-1,1]]}`,
		"huge range":    `{"op":"done","holder":"w","offsets":[[0,99999999]]}`,
		"unknown field": `{"op":"done","holder":"w","offsets":[[1,1]],"x":1}`,
	} {
		m := consumerMessage(good, 5)
		m.Value = []byte(value)
		if _, _, err := parseControl(m, nil); err == nil && name != "unknown field" {
			t.Errorf("%s: accepted", name)
		}
	}
	m := consumerMessage(good, 5)
	for _, h := range m.Headers {
		if string(h.Key) == wire.HeaderVersion {
			h.Value = []byte("9")
		}
	}
	if _, _, err := parseControl(m, nil); err == nil {
		t.Error("unknown version accepted")
	}
	// A done record from another holder does not release a lease.
	p := testPortal(t, "w")
	pt := testPartition(p, 0, offsets.Commit{Leases: []offsets.Lease{{Holder: "owner", Expires: time.Now().Add(time.Hour), Offsets: []offsets.Range{{First: 0, Last: 0}}}}})
	if err := pt.handle(requestRecord(t, "leased", 0)); err != nil {
		t.Fatal(err)
	}
	forged := controlMessage(nil, testTopic, 0, controlRecord{Op: opDone, Holder: "mallory", Offsets: [][2]int64{{0, 0}}})
	if err := pt.handle(consumerMessage(forged, 1)); err != nil {
		t.Fatal(err)
	}
	if next, _ := pt.tracker.Committable(); next != 0 || len(pt.parked) != 1 {
		t.Fatalf("a done record of another holder released the lease: commit %d, parked %d", next, len(pt.parked))
	}
}

// With a handover key, only records signed with it for this partition
// count: whoever may write to the requests topic cannot end or extend a
// lease (a forged done would leave a handed-over job unanswered if its
// holder then died; a forged renew would keep it from running).
func TestSignedControlRecords(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	rec := controlRecord{Op: opDone, Holder: "owner", Offsets: [][2]int64{{0, 0}}}
	signed := consumerMessage(controlMessage(key, testTopic, 0, rec), 5)
	if _, _, err := parseControl(signed, key); err != nil {
		t.Fatalf("signed record refused: %v", err)
	}
	otherKey := []byte("fedcba9876543210fedcba9876543210")
	for name, m := range map[string]*sarama.ConsumerMessage{
		"unsigned":        consumerMessage(controlMessage(nil, testTopic, 0, rec), 5),
		"another key":     consumerMessage(controlMessage(otherKey, testTopic, 0, rec), 5),
		"other partition": consumerMessage(controlMessage(key, testTopic, 1, rec), 5),
		"altered value": func() *sarama.ConsumerMessage {
			m := consumerMessage(controlMessage(key, testTopic, 0, rec), 5)
			m.Value = []byte(strings.Replace(string(m.Value), "[0,0]", "[0,9]", 1))
			return m
		}(),
		"bad signature encoding": func() *sarama.ConsumerMessage {
			m := consumerMessage(controlMessage(key, testTopic, 0, rec), 5)
			for _, h := range m.Headers {
				if string(h.Key) == headerSignature {
					h.Value = []byte("%%%")
				}
			}
			return m
		}(),
	} {
		if _, _, err := parseControl(m, key); !errors.Is(err, errUnsigned) {
			t.Errorf("%s: %v, want %v", name, err, errUnsigned)
		}
	}

	// A worker with the key keeps a lease against an unsigned done record
	// naming its holder, and releases it on the holder's signed one.
	p := testPortal(t, "w")
	p.handoverKey = key
	pt := testPartition(p, 0, offsets.Commit{Leases: []offsets.Lease{{Holder: "owner", Expires: time.Now().Add(time.Hour), Offsets: []offsets.Range{{First: 0, Last: 0}}}}})
	if err := pt.handle(requestRecord(t, "leased", 0)); err != nil {
		t.Fatal(err)
	}
	if err := pt.handle(consumerMessage(controlMessage(nil, testTopic, 0, rec), 1)); err != nil {
		t.Fatal(err)
	}
	if next, _ := pt.tracker.Committable(); next != 0 || len(pt.parked) != 1 {
		t.Fatalf("an unsigned done record released the lease: commit %d, parked %d", next, len(pt.parked))
	}
	if got := counter(t, p.metrics.handoverIgnored); got != 1 {
		t.Errorf("handover_records_ignored_total %v, want 1", got)
	}
	if err := pt.handle(consumerMessage(controlMessage(key, testTopic, 0, rec), 2)); err != nil {
		t.Fatal(err)
	}
	if next, _ := pt.tracker.Committable(); next != 3 || len(pt.parked) != 0 {
		t.Fatalf("the holder's signed done record did not release the lease: commit %d, parked %d", next, len(pt.parked))
	}
}

func TestHandoverKeyFile(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		h    *config.Handover
		want string
	}{
		"missing": {&config.Handover{KeyFile: filepath.Join(dir, "none")}, "handover.keyFile: open " + filepath.Join(dir, "none") + ": no such file or directory"},
		"short":   {&config.Handover{KeyFile: short}, "handover.keyFile " + short + ": a key of 9 bytes, want at least 16"},
	} {
		c := testConfig()
		c.Handover = tc.h
		if _, err := New(c, Options{Log: logr.Discard()}); err == nil || err.Error() != tc.want {
			t.Errorf("%s: New = %v, want %q", name, err, tc.want)
		}
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
