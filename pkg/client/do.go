package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"kafkasend.io/kafkasend/pkg/wire"
)

// Transport is an http.RoundTripper that sends each request as a job
// through Client. Use it as the Transport of an *http.Client:
//
//	hc := &http.Client{Transport: &client.Transport{Client: c}}
//
// The request's context deadline becomes the job's deadline (Config.Timeout
// when it has none). Error responses of the portal come back as errors that
// match the sentinels of this package (http.Client wraps them in a
// *url.Error; errors.Is sees through it).
type Transport struct {
	Client *Client
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t == nil || t.Client == nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, errors.New("kafkasend transport has no client")
	}
	return t.Client.Do(req.Context(), req)
}

// Do sends req as a job and waits for its answer. The job's deadline is
// ctx's deadline, or Config.Timeout from now when ctx has none. Any HTTP
// status of the upstream is a normal response; an error response of the
// portal, or the deadline passing first, is an *Error. Do closes req.Body.
func (c *Client) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	id, err := c.Submit(ctx, req)
	if err != nil {
		return nil, err
	}
	resp, err := c.Await(ctx, id)
	if err != nil {
		c.recv.abandon(id)
		return nil, err
	}
	resp.Request = req
	return resp, nil
}

// Submit sends req as a job and returns its ID once Kafka has acknowledged
// every chunk; Await(ctx, id) then returns the answer. The job's deadline is
// ctx's deadline, or Config.Timeout from now when ctx has none: the portal
// answers timeout after it. ctx does not interrupt producing, which Kafka's
// own timeouts bound. Submit closes req.Body.
func (c *Client) Submit(ctx context.Context, req *http.Request) (string, error) {
	job, err := c.job(ctx, req)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("submitting job: %w", err)
	}
	c.recv.register(job.ID, job.Deadline, true)
	if err := c.produce(job); err != nil {
		c.recv.abandon(job.ID)
		return "", err
	}
	c.recv.countSent()
	return job.ID, nil
}

// job converts req into a job of this client.
func (c *Client) job(ctx context.Context, req *http.Request) (*wire.Request, error) {
	if req == nil || req.URL == nil {
		if req != nil && req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, errors.New("request has no URL")
	}
	body, err := readBody(req, c.cfg.MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	h := req.Header.Clone()
	tp := h.Get("Traceparent")
	h.Del("Traceparent")
	h.Del("Host")
	if len(h) == 0 {
		h = nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.cfg.Timeout)
	}
	id, err := c.newJobID()
	if err != nil {
		return nil, err
	}
	return &wire.Request{
		ID: id, Method: method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery,
		Header: h, Body: body, ReplyTopic: c.cfg.ReplyTopic, ReplyPartition: c.cfg.ReplyPartition,
		Deadline: deadline, Traceparent: tp,
	}, nil
}

// readBody reads and closes the request body, up to limit bytes.
func readBody(req *http.Request, limit int64) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	if req.ContentLength > limit {
		return nil, localError(wire.ErrorTooLarge, "", nil, "request body of %d bytes is over the limit of %d bytes", req.ContentLength, limit)
	}
	var buf bytes.Buffer
	if req.ContentLength > 0 {
		buf.Grow(int(req.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	if n > limit {
		return nil, localError(wire.ErrorTooLarge, "", nil, "request body is over the limit of %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// newJobID returns a fresh job ID that sarama's hash partitioner (which the
// portal uses when it cannot honour a reply partition) places on this
// client's reply partition.
func (c *Client) newJobID() (string, error) {
	parts, err := c.kc.Partitions(c.cfg.ReplyTopic)
	if err != nil {
		return "", fmt.Errorf("reading partitions of reply topic %s: %w", c.cfg.ReplyTopic, err)
	}
	n := int32(len(parts))
	id := wire.NewJobID()
	if n <= 1 {
		return id, nil
	}
	hp := sarama.NewHashPartitioner(c.cfg.ReplyTopic)
	for range 64 * n {
		p, err := hp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(id)}, n)
		if err == nil && p == c.cfg.ReplyPartition {
			return id, nil
		}
		id = wire.NewJobID()
	}
	return id, nil // unlikely: such answers then go elsewhere, as without the search
}

// produce sends a job's chunks to one partition of the requests topic,
// chosen round-robin.
func (c *Client) produce(job *wire.Request) error {
	parts, err := c.pkc.Partitions(c.cfg.RequestsTopic)
	if err != nil || len(parts) == 0 {
		return fmt.Errorf("reading partitions of requests topic %s: %w", c.cfg.RequestsTopic, err)
	}
	p := parts[int(c.rr.Add(1)%uint32(len(parts)))]
	msgs, err := wire.RequestMessages(c.cfg.RequestsTopic, p, job, c.cfg.MaxMessageBytes)
	if err != nil {
		return localError(wire.KindOf(err), job.ID, err, "%v", err)
	}
	if err := c.producer.SendMessages(msgs); err != nil {
		return fmt.Errorf("producing job %s to %s: %w", job.ID, c.cfg.RequestsTopic, err)
	}
	return nil
}

// Await waits for the answer to job id, sent by this client or, with the ID
// kept, by an earlier one (see the package documentation on restarts). It
// returns when the answer arrives, ctx ends (an error matching ErrTimeout
// on a deadline) or the client is closed. An Await that ends with ctx can be
// repeated. The answer is handed out once: a second Await of a job whose
// answer was already returned waits for another answer.
func (c *Client) Await(ctx context.Context, id string) (*http.Response, error) {
	if err := wire.ValidateJobID(id); err != nil {
		return nil, fmt.Errorf("job ID: %w", err)
	}
	w := c.recv.lookup(id)
	if w == nil {
		w, _ = c.recv.register(id, time.Time{}, false)
	}
	if !w.local && !c.recv.isScanned(w) {
		if err := c.scan(ctx, w); err != nil {
			return nil, c.waitError(ctx, id, err)
		}
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return nil, c.waitError(ctx, id, ctx.Err())
	case <-c.stopped:
		return nil, fmt.Errorf("awaiting job %s: %w", id, errClosed)
	}
	resp, err := c.recv.claim(w)
	if err != nil {
		if errors.Is(err, errClosed) {
			return nil, fmt.Errorf("awaiting job %s: %w", id, err)
		}
		return nil, err
	}
	if resp.ErrorKind != wire.ErrorNone {
		return nil, responseError(resp)
	}
	return httpResponse(resp), nil
}

// waitError describes a wait that ended with ctx.
func (c *Client) waitError(ctx context.Context, id string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return localError(wire.ErrorTimeout, id, err, "no answer before the deadline")
	}
	return fmt.Errorf("awaiting job %s: %w", id, err)
}

// scan searches the reply partition from Config.ResumeOffset up to its
// current end for the answer to w's job: the part of the partition from
// before this client was waiting for that job. Later records reach w
// through the live consumer, because w is registered before the end is read.
func (c *Client) scan(ctx context.Context, w *waiter) error {
	topic, part := c.cfg.ReplyTopic, c.cfg.ReplyPartition
	end, err := c.kc.GetOffset(topic, part, sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("reading the end of %s/%d: %w", topic, part, err)
	}
	oldest, err := c.kc.GetOffset(topic, part, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("reading the start of %s/%d: %w", topic, part, err)
	}
	from := c.cfg.ResumeOffset
	if from < oldest {
		from = oldest // OffsetOldest, or a recorded offset already deleted
	}
	if from >= end {
		c.recv.markScanned(w)
		return nil
	}
	cons, err := sarama.NewConsumerFromClient(c.kc)
	if err != nil {
		return fmt.Errorf("creating scan consumer: %w", err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, part, from)
	if err != nil {
		return fmt.Errorf("scanning %s/%d from %d: %w", topic, part, from, err)
	}
	defer pc.AsyncClose()
	key := []byte(w.id)
	for {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("scanning %s/%d: consumer closed", topic, part)
			}
			if bytes.Equal(m.Key, key) {
				c.recv.ingest(m)
			}
			if m.Offset >= end-1 || w.isDone() {
				c.recv.markScanned(w)
				return nil
			}
		case err := <-pc.Errors():
			if err != nil {
				return fmt.Errorf("scanning %s/%d: %w", topic, part, err)
			}
		case <-w.done:
			c.recv.markScanned(w)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stopped:
			return errClosed
		}
	}
}

// httpResponse converts an upstream answer.
func httpResponse(r *wire.Response) *http.Response {
	h := r.Header
	if h == nil {
		h = http.Header{}
	}
	h.Del("Content-Length")
	h.Set("Content-Length", strconv.Itoa(len(r.Body)))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", r.Status, http.StatusText(r.Status)),
		StatusCode:    r.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(r.Body)),
		ContentLength: int64(len(r.Body)),
	}
}
