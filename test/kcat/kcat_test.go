// Package kcat_test proves that a requester in another language can use a
// portal: Python (standard library only) writes a job as docs/protocol.md
// describes, kcat (librdkafka) produces it, a portal answers it, and kcat
// reads the answer back.
package kcat_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"kafkasend.io/kafkasend/internal/portal"
	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
)

// makeJob is the script of docs/protocol.md section 8, with the metadata
// taken from the environment so that the test can name its topics.
const makeJob = `
import json, os, struct

def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

meta = json.loads(os.environ["JOB_META"])
body = os.environ["JOB_BODY"].encode()
m = json.dumps(meta, separators=(",", ":")).encode()
payload = b"KS\x01\x01" + struct.pack(">I", len(m)) + m + body
open("job.bin", "wb").write(payload)
print(f"-H ks-version=1 -H ks-type=request -H ks-chunk=0 -H ks-chunks=1 "
      f"-H ks-size={len(payload)} -H ks-crc32c={crc32c(payload):08x}")
`

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv(kafkatest.EnvRequireReal) == "1" {
			t.Fatalf("%s is required by make test (hack/test.sh installs kcat when root, else fails naming it): %v", name, err)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func TestKcatRequesterGetsItsAnswer(t *testing.T) {
	kcat, python := tool(t, "kcat"), tool(t, "python3")
	brokers := kafkatest.Brokers(t)
	requests := kafkatest.CreateTopic(t, brokers, 1)
	replies := kafkatest.CreateTopic(t, brokers, 1)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Path", r.URL.Path+"?"+r.URL.RawQuery)
		_, _ = w.Write(bytes.ToUpper(body))
	}))
	defer upstream.Close()

	cfg := config.Default()
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.ConsumerGroup = "g-" + requests
	cfg.Kafka.Version = kafkatest.SaramaConfig().Version.String()
	cfg.Topics = config.Topics{Requests: requests, Replies: replies}
	cfg.Upstream.BaseURL = upstream.URL
	cfg.Upstream.AllowInsecureHTTP = true
	p, err := portal.New(cfg, portal.Options{Log: logr.Discard(), SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// Python writes the job, as the protocol document shows.
	dir := t.TempDir()
	meta, _ := json.Marshal(map[string]any{
		"method": "POST", "path": "/v1/echo", "query": "lang=en",
		"headers":    map[string][]string{"Content-Type": {"text/plain"}},
		"replyTopic": replies, "deadlineMs": time.Now().Add(time.Minute).UnixMilli(),
	})
	gen := exec.CommandContext(ctx, python, "-c", makeJob)
	gen.Dir = dir
	gen.Env = append(os.Environ(), "JOB_META="+string(meta), "JOB_BODY=hello from python")
	flags, err := gen.Output()
	if err != nil {
		t.Fatalf("make_job: %v", err)
	}

	// kcat produces it.
	args := append([]string{"-P", "-b", strings.Join(brokers, ","), "-t", requests, "-k", "job-kcat-1"},
		strings.Fields(string(flags))...)
	produce := exec.CommandContext(ctx, kcat, append(args, filepath.Join(dir, "job.bin"))...)
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}

	// kcat reads the answer: key, then the raw value.
	var value []byte
	for ctx.Err() == nil {
		out, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(brokers, ","), "-t", replies,
			"-o", "beginning", "-e", "-q", "-f", "%k\n%h\n%s").Output()
		if err == nil && len(out) > 0 {
			parts := bytes.SplitN(out, []byte("\n"), 3)
			if len(parts) == 3 && string(parts[0]) == "job-kcat-1" {
				if !strings.Contains(string(parts[1]), "ks-type=response") {
					t.Errorf("answer headers %q", parts[1])
				}
				value = parts[2]
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if value == nil {
		t.Fatalf("no answer read by kcat: %v", ctx.Err())
	}
	// Section 3: "KS", version, type 2, metadata length, JSON, body.
	if len(value) < 8 || string(value[:4]) != "KS\x01\x02" {
		t.Fatalf("answer prefix % x", value[:min(8, len(value))])
	}
	n := binary.BigEndian.Uint32(value[4:8])
	var got struct {
		Status  int                 `json:"status"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal(value[8:8+n], &got); err != nil {
		t.Fatalf("answer metadata: %v", err)
	}
	body := string(value[8+n:])
	if got.Status != 200 || body != "HELLO FROM PYTHON" || got.Headers["X-Seen-Path"][0] != "/v1/echo?lang=en" {
		t.Errorf("answer: status %d, headers %v, body %q", got.Status, got.Headers, body)
	}
}
