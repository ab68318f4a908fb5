package cli

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/spf13/cobra"

	"kafkasend.io/kafkasend/pkg/client"
	"kafkasend.io/kafkasend/pkg/wire"
)

func newAwaitCommand(sio IO) *cobra.Command {
	var (
		k      kafkaFlags
		a      answerFlags
		resume int64
	)
	cmd := &cobra.Command{
		Use:   "await JOBID",
		Short: "Wait for the answer to a job sent with --async",
		Long: `Waits for the answer to a job sent with 'kafkasend send --async' and prints
it like 'kafkasend send' does. Use the same --reply-topic and
--reply-partition as the send. The reply partition is searched from
--resume-offset (default: the oldest offset Kafka still has), then followed
until the answer arrives or --timeout passes.

Exit codes: as for 'kafkasend send' (see 'kafkasend --help').`,
		Example: `  id=$(kafkasend send --async --timeout 20m -d @report.json /v1/reports)
  echo "$id" > report.job                 # keep the ID; the process may end
  kafkasend await -v --timeout 20m -o report.json "$(cat report.job)"
  kafkasend await -i --reply-partition 3 01JD8ZQ7XH2Y6M0W4B9V3K5T1R`,
		Args: exactlyOne("JOBID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := k.config()
			if err != nil {
				return err
			}
			switch {
			case resume == -1:
				cfg.ResumeOffset = sarama.OffsetOldest
			case resume >= 0:
				cfg.ResumeOffset = resume
			default:
				return usageError{"--resume-offset must be -1 or an offset, not " + strconv.FormatInt(resume, 10)}
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.Timeout)
			defer cancel()
			resp, err := awaitAnswer(ctx, c, args[0], sio, a.verbose)
			if err != nil {
				return err
			}
			return printResponse(sio, resp, a)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	a.register(cmd)
	fs.Int64Var(&resume, "resume-offset", int64(envInt(sio.Getenv, "KAFKASEND_RESUME_OFFSET", -1)),
		"reply-partition offset to search from; -1 = the oldest (env KAFKASEND_RESUME_OFFSET)")
	k.register(fs, sio.Getenv)
	return cmd
}

// progressEvery is how often -v reports a wait that is still going on when
// stderr is not a terminal (on a terminal the line is redrawn every second).
var progressEvery = 5 * time.Second

// awaitAnswer awaits job id; with verbose it reports on stderr, while it
// waits, how long it has waited and when the deadline passes.
func awaitAnswer(ctx context.Context, c *client.Client, id string, sio IO, verbose bool) (*http.Response, error) {
	if !verbose {
		return c.Await(ctx, id)
	}
	start := time.Now()
	deadline, _ := ctx.Deadline()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := progressEvery
		if sio.StderrTerminal {
			every = time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		drawn := false
		for {
			select {
			case <-stop:
				if drawn {
					fmt.Fprint(sio.Stderr, "\n")
				}
				return
			case now := <-t.C:
				line := fmt.Sprintf("kafkasend: waiting for job %s: %s elapsed, deadline in %s (%s)",
					id, now.Sub(start).Round(time.Second), time.Until(deadline).Round(time.Second), deadline.Format(time.TimeOnly))
				if sio.StderrTerminal {
					fmt.Fprintf(sio.Stderr, "\r\033[K%s", line)
					drawn = true
				} else {
					fmt.Fprintln(sio.Stderr, line)
				}
			}
		}
	}()
	resp, err := c.Await(ctx, id)
	close(stop)
	wg.Wait()
	if err == nil {
		fmt.Fprintf(sio.Stderr, "kafkasend: job %s answered %s after %s\n", id, resp.Status, time.Since(start).Round(time.Millisecond))
	}
	return resp, err
}

// chunkCount is the number of chunk records the client produced for the
// job: its envelope, as pkg/client encodes it, split by max-message-bytes.
func chunkCount(id string, req *http.Request, bodyLen int64, cfg client.Config) (string, error) {
	h := req.Header.Clone()
	tp := h.Get("Traceparent")
	h.Del("Traceparent")
	h.Del("Host")
	if len(h) == 0 {
		h = nil
	}
	job := &wire.Request{
		ID: id, Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, Header: h,
		Body: make([]byte, bodyLen), ReplyTopic: cfg.ReplyTopic, ReplyPartition: cfg.ReplyPartition,
		Deadline: time.Now().Add(cfg.Timeout), Traceparent: tp,
	}
	payload, err := wire.EncodeRequest(job)
	if err != nil {
		return "", err
	}
	chunks, err := wire.Split(id, wire.TypeRequest, payload, cfg.MaxMessageBytes)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(len(chunks)), nil
}
