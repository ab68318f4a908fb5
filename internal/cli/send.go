package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"kafkasend.io/kafkasend/pkg/client"
)

const sendHelp = `Usage: kafkasend send [options] PATH

Sends one HTTP request as a job to a kafkasend portal and prints the
upstream's answer (the body; with -i the status line and headers first, like
curl -i). PATH is relative to the portal's upstream base URL and may carry a
query string; the portal decides the host.

Examples:
  export KAFKASEND_BROKERS=kafka-0:9092 KAFKASEND_TOPIC=orders-requests \
         KAFKASEND_REPLY_TOPIC=orders-replies
  kafkasend send /v1/items/7
  kafkasend send -i -H 'Accept: application/json' '/v1/items?limit=10'
  kafkasend send -X PUT -H 'Content-Type: application/json' -d '{"name":"x"}' /v1/items/7
  kafkasend send -d @order.json /v1/orders          # POST a file; -d @- reads stdin
  id=$(kafkasend send --async --timeout 20m /v1/reports)
  kafkasend await --timeout 20m "$id"

Exit codes: 0 answer printed (any HTTP status unless --fail); 1 error response
(timeout, rejected, unreachable, too_large, auth, ...) or Kafka failure, with
"kafkasend: KIND: MESSAGE" on stderr; 2 usage error; 22 --fail and HTTP >= 400.
`

// headerFlags collects repeated -H values.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func runSend(ctx context.Context, args []string, sio IO) error {
	fs := newFlagSet("send", sendHelp, sio.Stderr)
	var k kafkaFlags
	k.register(fs, sio.Getenv)
	var headers headerFlags
	method := fs.String("X", "", "HTTP method (default GET, or POST with -d)")
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	data := fs.String("d", "", "request body: DATA, @FILE, or @- for stdin")
	include := fs.Bool("i", false, "print the status line and headers before the body")
	async := fs.Bool("async", false, "print the job ID once Kafka has the job, and exit; see 'kafkasend await'")
	fail := fs.Bool("fail", false, "exit 22 without printing the body when the HTTP status is 400 or more")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageOrHelp(err)
	}
	if len(pos) != 1 {
		return usageError{"send needs exactly one PATH (see kafkasend send --help)"}
	}
	cfg, err := k.config()
	if err != nil {
		return err
	}
	req, err := buildRequest(*method, pos[0], headers, *data, sio.Stdin)
	if err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if *async {
		id, err := c.Submit(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(sio.Stdout, id)
		return nil
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return err
	}
	return printResponse(sio, resp, *include, *fail)
}

// usageOrHelp passes -h through and marks other flag errors as usage
// errors (the flag package printed them already).
func usageOrHelp(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return exitError{ExitUsage}
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
// line and headers with include.
func printResponse(sio IO, resp *http.Response, include, fail bool) error {
	defer resp.Body.Close()
	if fail && resp.StatusCode >= 400 {
		fmt.Fprintf(sio.Stderr, "kafkasend: the upstream answered %s\n", resp.Status)
		return exitError{ExitHTTPError}
	}
	if include {
		fmt.Fprintf(sio.Stdout, "%s %s\r\n", resp.Proto, resp.Status)
		if err := resp.Header.Write(sio.Stdout); err != nil {
			return fmt.Errorf("writing headers: %w", err)
		}
		fmt.Fprint(sio.Stdout, "\r\n")
	}
	if _, err := io.Copy(sio.Stdout, resp.Body); err != nil {
		return fmt.Errorf("writing the body: %w", err)
	}
	return nil
}
