package portal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/offsets"
	"kafkasend.io/kafkasend/pkg/wire"
)

// A partition that leaves a worker (cooperative rebalance, scale-in,
// rollout, shutdown) is released at once. Its jobs still running here keep
// running: this worker answers them. Their offsets are committed as leased
// to this worker (offsets.Lease in the commit metadata), and the worker
// tells the partition's next owner about them with control records on the
// same partition, which that owner reads in order with the jobs:
//
//   - renew: the jobs still run here, until a new expiry (sent every third
//     of the lease);
//   - done: the jobs were answered; the owner marks their offsets done.
//
// The next owner skips leased jobs while the lease lives and runs them
// once it lapses (the holder died). docs/portal.md has the failure cases.

// Control records: ks-type "handover", ks-version 1, key = holder, value =
// JSON controlRecord; with a handover key, ks-signature is the unpadded
// base64url HMAC-SHA256 of the topic, the partition and the value.
const (
	typeHandover    = "handover"
	controlVersion  = "1"
	headerSignature = "ks-signature"
)

// errUnsigned marks a control record without a valid signature.
var errUnsigned = errors.New("handover record not signed with the pipeline's handover key")

// controlMAC is the signature of a control record's value on topic/partition.
func controlMAC(key []byte, topic string, partition int32, value []byte) []byte {
	mac := hmac.New(sha256.New, key)
	var part [4]byte
	binary.BigEndian.PutUint32(part[:], uint32(partition))
	mac.Write([]byte(topic))
	mac.Write([]byte{0})
	mac.Write(part[:])
	mac.Write(value)
	return mac.Sum(nil)
}

// verifyControl checks a control record's signature against key.
func verifyControl(key []byte, m *sarama.ConsumerMessage) error {
	for _, h := range m.Headers {
		if h == nil || string(h.Key) != headerSignature {
			continue
		}
		sig, err := base64.RawURLEncoding.DecodeString(string(h.Value))
		if err == nil && hmac.Equal(sig, controlMAC(key, m.Topic, m.Partition, m.Value)) {
			return nil
		}
		break
	}
	return errUnsigned
}

// readHandoverKey reads the key of handover.keyFile; nil when none is set.
func readHandoverKey(h *config.Handover) ([]byte, error) {
	if h == nil || h.KeyFile == "" {
		return nil, nil
	}
	key, err := os.ReadFile(h.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("handover.keyFile: %w", err)
	}
	if len(key) < minHandoverKey {
		return nil, fmt.Errorf("handover.keyFile %s: a key of %d bytes, want at least %d", h.KeyFile, len(key), minHandoverKey)
	}
	return key, nil
}

// minHandoverKey is the shortest handover key accepted, in bytes.
const minHandoverKey = 16

// Operations of a control record.
const (
	opRenew = "renew"
	opDone  = "done"
)

// controlRecord is the value of a handover control record.
type controlRecord struct {
	Op     string `json:"op"`
	Holder string `json:"holder"`
	// Expires (renew only) is the new end of the lease, Unix milliseconds.
	Expires int64 `json:"expires,omitempty"`
	// Offsets are inclusive [first, last] ranges of the jobs' chunk offsets.
	Offsets [][2]int64 `json:"offsets"`
}

// maxControlRanges bounds what one control record may list.
const maxControlRanges = 4096

// isControl reports whether m is a handover control record.
func isControl(m *sarama.ConsumerMessage) bool {
	for _, h := range m.Headers {
		if h != nil && string(h.Key) == wire.HeaderType {
			return string(h.Value) == typeHandover
		}
	}
	return false
}

// parseControl decodes a control record, refusing anything malformed and,
// with a key, anything not signed with it.
func parseControl(m *sarama.ConsumerMessage, key []byte) (controlRecord, []offsets.Range, error) {
	var c controlRecord
	if key != nil {
		if err := verifyControl(key, m); err != nil {
			return c, nil, err
		}
	}
	version := ""
	for _, h := range m.Headers {
		if h != nil && string(h.Key) == wire.HeaderVersion {
			version = string(h.Value)
		}
	}
	if version != controlVersion {
		return c, nil, fmt.Errorf("handover record version %q, want %s", version, controlVersion)
	}
	if len(m.Value) > 1<<20 {
		return c, nil, errors.New("handover record over 1 MiB")
	}
	if err := json.Unmarshal(m.Value, &c); err != nil {
		return c, nil, fmt.Errorf("handover record: %w", err)
	}
	if c.Op != opRenew && c.Op != opDone {
		return c, nil, fmt.Errorf("handover record op %q", c.Op)
	}
	if c.Holder == "" || len(c.Offsets) == 0 || len(c.Offsets) > maxControlRanges {
		return c, nil, errors.New("handover record without holder or offsets")
	}
	rs := make([]offsets.Range, 0, len(c.Offsets))
	for _, r := range c.Offsets {
		if r[0] < 0 || r[1] < r[0] || r[1]-r[0] > 1<<20 {
			return c, nil, fmt.Errorf("handover record range %v", r)
		}
		rs = append(rs, offsets.Range{First: r[0], Last: r[1]})
	}
	return c, rs, nil
}

// controlMessage builds a control record for topic/partition, signed with
// key unless it is nil.
func controlMessage(key []byte, topic string, partition int32, c controlRecord) *sarama.ProducerMessage {
	value, _ := json.Marshal(c) // plain data: cannot fail
	headers := []sarama.RecordHeader{
		{Key: []byte(wire.HeaderVersion), Value: []byte(controlVersion)},
		{Key: []byte(wire.HeaderType), Value: []byte(typeHandover)},
	}
	if key != nil {
		sig := base64.RawURLEncoding.EncodeToString(controlMAC(key, topic, partition, value))
		headers = append(headers, sarama.RecordHeader{Key: []byte(headerSignature), Value: []byte(sig)})
	}
	return &sarama.ProducerMessage{
		Topic: topic, Partition: partition,
		Key:      sarama.StringEncoder(c.Holder),
		Value:    sarama.ByteEncoder(value),
		Headers:  headers,
		Metadata: &controlAck{},
	}
}

// controlAck marks a control record in the producer's acknowledgements.
type controlAck struct{ tries int }

func rangesOf(positions []position) [][2]int64 {
	offs := make([]int64, 0, len(positions))
	for _, p := range positions {
		offs = append(offs, p.Offset)
	}
	slices.Sort(offs)
	rs := offsets.Ranges(offs)
	out := make([][2]int64, len(rs))
	for i, r := range rs {
		out[i] = [2]int64{r.First, r.Last}
	}
	return out
}

// handover keeps the jobs of partitions this worker released and still
// runs: it renews their leases and reports their completion.
type handover struct {
	p      *Portal
	holder string
	lease  time.Duration

	mu   sync.Mutex
	jobs map[*flight]struct{}
	// queue holds control records to send; a goroutine of their own sends
	// them, so that the producer's acknowledgement loop never blocks on
	// the producer's input.
	queue []*sarama.ProducerMessage
	wake  chan struct{}
}

func newHandover(p *Portal, holder string, lease time.Duration) *handover {
	return &handover{p: p, holder: holder, lease: lease, jobs: map[*flight]struct{}{}, wake: make(chan struct{}, 1)}
}

// add takes over the flights of a released partition; it returns their
// lease for the commit metadata.
func (h *handover) add(flights []*flight, now time.Time) offsets.Lease {
	var offs []int64
	h.mu.Lock()
	for _, f := range flights {
		h.jobs[f] = struct{}{}
		for _, pos := range f.positions {
			offs = append(offs, pos.Offset)
		}
	}
	n := len(h.jobs)
	h.mu.Unlock()
	h.p.metrics.handoverJobs.Set(float64(n))
	slices.Sort(offs)
	return offsets.Lease{Holder: h.holder, Expires: now.Add(h.lease), Offsets: offsets.Ranges(offs)}
}

// complete reports a handed-over job answered (or given up: then its next
// owner runs it when the lease lapses, and no record is sent).
func (h *handover) complete(f *flight, answered bool, topic string, partition int32) {
	h.mu.Lock()
	_, ok := h.jobs[f]
	delete(h.jobs, f)
	n := len(h.jobs)
	h.mu.Unlock()
	if !ok {
		return
	}
	h.p.metrics.handoverJobs.Set(float64(n))
	if answered && len(f.positions) > 0 {
		h.enqueue(opDone, controlMessage(h.p.handoverKey, topic, partition, controlRecord{Op: opDone, Holder: h.holder, Offsets: rangesOf(f.positions)}))
	}
}

// pending is the number of handed-over jobs still running here.
func (h *handover) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.jobs)
}

// renew sends one renew record per partition with jobs still running here.
func (h *handover) renew(now time.Time) {
	type tp struct {
		topic     string
		partition int32
	}
	byPart := map[tp][]position{}
	h.mu.Lock()
	for f := range h.jobs {
		if len(f.positions) > 0 {
			k := tp{f.positions[0].Topic, f.positions[0].Partition}
			byPart[k] = append(byPart[k], f.positions...)
		}
	}
	h.mu.Unlock()
	exp := now.Add(h.lease).UnixMilli()
	for k, positions := range byPart {
		h.enqueue(opRenew, controlMessage(h.p.handoverKey, k.topic, k.partition, controlRecord{Op: opRenew, Holder: h.holder, Expires: exp, Offsets: rangesOf(positions)}))
	}
}

func (h *handover) enqueue(op string, m *sarama.ProducerMessage) {
	h.p.metrics.handoverRecords.WithLabelValues(op).Inc()
	h.mu.Lock()
	h.queue = append(h.queue, m)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run sends queued control records and renews leases until stop closes;
// then it sends what is queued and returns.
func (h *handover) run(stop <-chan struct{}) {
	renew := time.NewTicker(max(h.lease/3, 100*time.Millisecond))
	defer renew.Stop()
	for {
		select {
		case <-h.wake:
		case now := <-renew.C:
			h.renew(now)
			continue
		case <-stop:
			h.flush()
			return
		}
		h.flush()
	}
}

func (h *handover) flush() {
	h.mu.Lock()
	q := h.queue
	h.queue = nil
	h.mu.Unlock()
	for _, m := range q {
		if !h.p.send(m) {
			return
		}
	}
}
