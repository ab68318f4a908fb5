package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"kafkasend.io/kafkasend/pkg/client"
)

// answerFlags are how send and await print an answer.
type answerFlags struct {
	include, fail, verbose bool
	output                 string
}

func (a *answerFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVarP(&a.include, "include", "i", false, "print the status line and headers before the body")
	fs.BoolVar(&a.fail, "fail", false, "exit 22 without printing the body when the HTTP status is 400 or more")
	fs.StringVarP(&a.output, "output", "o", "", "write the answer to FILE instead of standard output (- is standard output)")
	fs.BoolVarP(&a.verbose, "verbose", "v", false, "on stderr: the job ID, the chunks sent, and a progress line while waiting (elapsed, deadline)")
	_ = cmd.MarkFlagFilename("output")
}

func newSendCommand(sio IO) *cobra.Command {
	var (
		k       kafkaFlags
		a       answerFlags
		method  string
		headers []string
		data    string
		async   bool
	)
	cmd := &cobra.Command{
		Use:   "send PATH",
		Short: "Send one HTTP request as a job and print the answer",
		Long: `Sends one HTTP request as a job to a kafkasend portal and prints the
upstream's answer (the body; with -i the status line and headers first, like
curl -i). PATH is relative to the portal's upstream base URL and may carry a
query string; the portal decides the host.

Exit codes: see 'kafkasend --help' (0 answer printed, 1 Kafka or file
failure, 2 usage, 3-10 the portal's error response by kind, 22 --fail and
HTTP >= 400).`,
		Example: `  export KAFKASEND_BROKERS=kafka-0:9092 KAFKASEND_TOPIC=orders-requests \
         KAFKASEND_REPLY_TOPIC=orders-replies
  kafkasend send /v1/items/7
  kafkasend send -i -H 'Accept: application/json' '/v1/items?limit=10'
  kafkasend send -X PUT -H 'Content-Type: application/json' -d '{"name":"x"}' /v1/items/7
  kafkasend send -d @order.json -o answer.json /v1/orders   # POST a file; -d @- reads stdin
  kafkasend send -iv --timeout 20m /v1/reports               # job ID, chunks, progress on stderr
  id=$(kafkasend send --async --timeout 20m /v1/reports)
  kafkasend await --timeout 20m "$id"`,
		Args: exactlyOne("PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := k.config()
			if err != nil {
				return err
			}
			req, err := buildRequest(method, args[0], headers, data, sio.Stdin)
			if err != nil {
				return err
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.Timeout)
			defer cancel()
			body := req.ContentLength
			id, err := c.Submit(ctx, req)
			if err != nil {
				return err
			}
			if a.verbose {
				chunks, err := chunkCount(id, req, body, cfg)
				if err != nil {
					chunks = "?"
				}
				fmt.Fprintf(sio.Stderr, "kafkasend: job %s: %d body bytes in %s chunks to %s; answer on %s partition %d\n",
					id, body, chunks, cfg.RequestsTopic, cfg.ReplyTopic, cfg.ReplyPartition)
			}
			if async {
				fmt.Fprintln(sio.Stdout, id)
				return nil
			}
			resp, err := awaitAnswer(ctx, c, id, sio, a.verbose)
			if err != nil {
				return err
			}
			return printResponse(sio, resp, a)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVarP(&method, "request", "X", "", "HTTP method (default GET, or POST with -d)")
	fs.StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	fs.StringVarP(&data, "data", "d", "", "request body: DATA, @FILE, or @- for stdin")
	a.register(cmd)
	fs.BoolVar(&async, "async", false, "print the job ID once Kafka has the job, and exit; see 'kafkasend await'")
	k.register(fs, sio.Getenv)
	_ = cmd.RegisterFlagCompletionFunc("request", cobra.FixedCompletions(
		[]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// buildRequest makes the HTTP request of a send command line.
func buildRequest(method, path string, headers []string, data string, stdin io.Reader) (*http.Request, error) {
	u, err := url.Parse(path)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Fragment != "" {
		return nil, usageError{fmt.Sprintf("PATH %q must be a path with an optional query, like /v1/items?limit=10", path)}
	}
	var body []byte
	switch {
	case data == "@-":
		if body, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("reading the body from stdin: %w", err)
		}
	case strings.HasPrefix(data, "@"):
		if body, err = os.ReadFile(data[1:]); err != nil {
			return nil, fmt.Errorf("reading the body: %w", err)
		}
	default:
		body = []byte(data)
	}
	if method == "" {
		method = http.MethodGet
		if data != "" {
			method = http.MethodPost
		}
	}
	req := &http.Request{Method: method, URL: u, Header: http.Header{}, ContentLength: int64(len(body))}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, usageError{fmt.Sprintf("header %q: want 'Name: value'", h)}
		}
		req.Header.Add(name, strings.TrimSpace(value))
	}
	if data != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d does
	}
	return req, nil
}

// printResponse writes the answer like curl: the body, after the status
// line and headers with --include, to standard output or --output.
func printResponse(sio IO, resp *http.Response, a answerFlags) error {
	defer resp.Body.Close()
	if a.fail && resp.StatusCode >= 400 {
		fmt.Fprintf(sio.Stderr, "kafkasend: the upstream answered %s\n", resp.Status)
		return exitError{ExitHTTPError}
	}
	out := sio.Stdout
	var f *os.File
	if a.output != "" && a.output != "-" {
		var err error
		if f, err = os.Create(a.output); err != nil {
			return fmt.Errorf("writing the answer: %w", err)
		}
		out = f
	}
	err := writeResponse(out, resp, a.include)
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing the answer to %s: %w", a.output, cerr)
		}
	}
	if err == nil && f != nil && a.verbose {
		fmt.Fprintf(sio.Stderr, "kafkasend: wrote the answer (%s) to %s\n", resp.Status, a.output)
	}
	return err
}

func writeResponse(out io.Writer, resp *http.Response, include bool) error {
	if include {
		fmt.Fprintf(out, "%s %s\r\n", resp.Proto, resp.Status)
		if err := resp.Header.Write(out); err != nil {
			return fmt.Errorf("writing headers: %w", err)
		}
		fmt.Fprint(out, "\r\n")
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("writing the body: %w", err)
	}
	return nil
}
