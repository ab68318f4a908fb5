package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/wire"
)

func TestErrorMatchesOnlyItsKind(t *testing.T) {
	sentinels := map[wire.ErrorKind]error{
		wire.ErrorTimeout: ErrTimeout, wire.ErrorUnreachable: ErrUnreachable, wire.ErrorRejected: ErrRejected,
		wire.ErrorTooLarge: ErrTooLarge, wire.ErrorMalformed: ErrMalformed, wire.ErrorIncomplete: ErrIncomplete,
		wire.ErrorAuth: ErrAuth, wire.ErrorInternal: ErrInternal,
	}
	for kind := range sentinels {
		err := error(responseError(&wire.Response{ID: "j1", Status: 504, ErrorKind: kind, ErrorMessage: "why"}))
		// Through the wrapping http.Client adds.
		err = &url.Error{Op: "Get", URL: "kafkasend:///x", Err: err}
		for other, s := range sentinels {
			if got := errors.Is(err, s); got != (other == kind) {
				t.Errorf("%s error: errors.Is(%s) = %v", kind, other, got)
			}
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Status != 504 || ce.JobID != "j1" || !strings.Contains(ce.Error(), string(kind)+": why") {
			t.Errorf("%s error: %v does not carry kind, status, job and message", kind, err)
		}
	}
	unknown := responseError(&wire.Response{ErrorKind: "quota_exceeded"})
	if !errors.Is(unknown, ErrInternal) || errors.Is(unknown, ErrTimeout) {
		t.Errorf("an unknown kind must match ErrInternal only")
	}
	deadline := localError(wire.ErrorTimeout, "j", context.DeadlineExceeded, "no answer")
	if !errors.Is(deadline, ErrTimeout) || !errors.Is(deadline, context.DeadlineExceeded) {
		t.Errorf("a local deadline error must match ErrTimeout and context.DeadlineExceeded")
	}
}

// messages turns a response into consumed records.
func messages(t *testing.T, r *wire.Response, maxBytes int) []*sarama.ConsumerMessage {
	t.Helper()
	pms, err := wire.ResponseMessages("replies", 0, r, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	var out []*sarama.ConsumerMessage
	for i, pm := range pms {
		k, _ := pm.Key.Encode()
		v, _ := pm.Value.Encode()
		var hs []*sarama.RecordHeader
		for _, h := range pm.Headers {
			hs = append(hs, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
		}
		out = append(out, &sarama.ConsumerMessage{Key: k, Value: v, Headers: hs, Offset: int64(i)})
	}
	return out
}

func TestReceiverReassemblesAndMatchesByJobID(t *testing.T) {
	r := newReceiver(1<<20, 1<<20)
	body := []byte(strings.Repeat("0123456789", 500))
	mine := messages(t, &wire.Response{ID: "mine", Status: 200, Body: body}, 2048)
	other := messages(t, &wire.Response{ID: "other", Status: 200, Body: []byte("x")}, 2048)
	if len(mine) < 3 {
		t.Fatalf("want a multi-chunk response, got %d chunks", len(mine))
	}
	w, _ := r.register("mine", time.Time{}, true)
	// Out of order, a repeated chunk, another job's answer in between.
	order := []*sarama.ConsumerMessage{mine[2], mine[0], other[0], mine[0]}
	order = append(order, mine[1])
	order = append(order, mine[3:]...)
	for _, m := range order {
		r.ingest(m)
	}
	if !w.isDone() {
		t.Fatal("complete response not delivered")
	}
	resp, err := r.claim(w)
	if err != nil || resp.ID != "mine" || string(resp.Body) != string(body) {
		t.Fatalf("got %v, %v; want the reassembled body of job mine", resp, err)
	}
	// A second answer to the same job (a re-execution) is not delivered.
	for _, m := range mine {
		r.ingest(m)
	}
	s := r.stats()
	if s.Delivered != 1 || s.Unmatched != 2 || s.Malformed != 0 {
		t.Fatalf("stats %+v, want 1 delivered and 2 unmatched (other, repeat)", s)
	}
	if r.held != 0 {
		t.Fatalf("%d bytes still held after the answer was claimed", r.held)
	}
}

func TestReceiverBoundsMemory(t *testing.T) {
	r := newReceiver(8<<10, 1<<20)
	var ws []*waiter
	for i := range 4 {
		id := fmt.Sprintf("job%d", i)
		w, _ := r.register(id, time.Time{}, true)
		ws = append(ws, w)
		for _, m := range messages(t, &wire.Response{ID: id, Status: 200, Body: make([]byte, 3<<10)}, 2048) {
			r.ingest(m)
		}
	}
	if r.held > 8<<10 {
		t.Fatalf("%d bytes held, limit 8 KiB", r.held)
	}
	if _, err := r.claim(ws[0]); !errors.Is(err, ErrInternal) {
		t.Fatalf("the oldest unclaimed answer: err %v, want an internal error saying it was dropped", err)
	}
	if resp, err := r.claim(ws[3]); err != nil || len(resp.Body) != 3<<10 {
		t.Fatalf("the newest answer: %v", err)
	}
	if s := r.stats(); s.Evicted == 0 {
		t.Fatalf("stats %+v: evictions not counted", s)
	}

	small := newReceiver(1<<20, 100)
	w, _ := small.register("big", time.Time{}, true)
	for _, m := range messages(t, &wire.Response{ID: "big", Status: 200, Body: make([]byte, 1000)}, 2048) {
		small.ingest(m)
	}
	if _, err := small.claim(w); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a response over MaxResponseBytes: err %v, want too_large", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no brokers":         {RequestsTopic: "a", ReplyTopic: "b"},
		"no topics":          {Brokers: []string{"x:1"}},
		"bad reply topic":    {Brokers: []string{"x:1"}, RequestsTopic: "a", ReplyTopic: "no spaces"},
		"negative partition": {Brokers: []string{"x:1"}, RequestsTopic: "a", ReplyTopic: "b", ReplyPartition: -1},
		"tiny messages":      {Brokers: []string{"x:1"}, RequestsTopic: "a", ReplyTopic: "b", MaxMessageBytes: 100},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	cfg, err := Config{Brokers: []string{"x:1"}, RequestsTopic: "a", ReplyTopic: "b"}.withDefaults()
	if err != nil || cfg.Timeout != DefaultTimeout || cfg.MaxMessageBytes != DefaultMaxMessageBytes || cfg.ResumeOffset != sarama.OffsetOldest {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}
