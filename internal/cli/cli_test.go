package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"kafkasend.io/kafkasend/pkg/client"
	"kafkasend.io/kafkasend/pkg/wire"
)

// noEnv is an environment without KAFKASEND_* settings, whatever the
// shell running the tests has.
func noEnv(string) string { return "" }

func TestBuildRequest(t *testing.T) {
	req, err := buildRequest("", "/v1/items?limit=10", []string{"Accept: application/json", "X-A:  b "}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "GET" || req.URL.EscapedPath() != "/v1/items" || req.URL.RawQuery != "limit=10" ||
		req.Header.Get("Accept") != "application/json" || req.Header.Get("X-A") != "b" || req.Body != nil {
		t.Fatalf("request %+v", req)
	}
	req, err = buildRequest("", "/v1/orders", nil, "@-", strings.NewReader("from stdin"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if req.Method != "POST" || string(body) != "from stdin" || req.ContentLength != 10 {
		t.Fatalf("-d @-: method %s body %q", req.Method, body)
	}
	for _, bad := range []struct{ path, header string }{
		{"http://elsewhere/x", ""}, {"/x#frag", ""}, {"/x", "no colon"}, {"/x", ": empty name"},
	} {
		var hs []string
		if bad.header != "" {
			hs = []string{bad.header}
		}
		if _, err := buildRequest("", bad.path, hs, "", nil); err == nil {
			t.Errorf("path %q header %q accepted", bad.path, bad.header)
		}
	}
}

func run(args []string, getenv func(string) string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, IO{Stdout: &out, Stderr: &errb, Getenv: getenv})
	return code, out.String(), errb.String()
}

func TestMainExitCodes(t *testing.T) {
	if code, _, stderr := run(nil, noEnv); code != ExitUsage || !strings.Contains(stderr, "kafkasend [command]") {
		t.Errorf("no arguments: exit %d, stderr %q", code, stderr)
	}
	if code, stdout, _ := run([]string{"help"}, noEnv); code != ExitOK || !strings.Contains(stdout, "send") {
		t.Errorf("help: exit %d", code)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "--reply-partition", "-1", "--brokers", "b:1", "--topic", "a", "--reply-topic", "r", "/x"}, "reply-partition"},
		{[]string{"send", "/x"}, "--brokers (KAFKASEND_BROKERS)"},
		{[]string{"send", "--no-such-flag", "/x"}, "unknown flag"},
		{[]string{"send", "-iz", "/x"}, "'z'"},
		{[]string{"send", "/a", "/b"}, "exactly one PATH"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"demo", "extra"}, "takes no arguments"},
		{[]string{"demo", "--slow", "0", "--fast", "0"}, "at least 1"},
		{[]string{"await", "--resume-offset", "-5", "--brokers", "b:1", "--topic", "a", "--reply-topic", "r", "ID"}, "--resume-offset"},
	} {
		code, stdout, stderr := run(tc.args, noEnv)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, stdout, stderr, ExitUsage, tc.want)
		}
	}
}

// TestSettingsFromTheEnvironment: flags default to KAFKASEND_* and a flag
// wins over its variable.
func TestSettingsFromTheEnvironment(t *testing.T) {
	env := map[string]string{"KAFKASEND_BROKERS": "b:1", "KAFKASEND_TOPIC": "t", "KAFKASEND_REPLY_TOPIC": "r", "KAFKASEND_TIMEOUT": "-1s"}
	code, _, stderr := run([]string{"send", "/x"}, func(k string) string { return env[k] })
	if code != ExitUsage || !strings.Contains(stderr, "--timeout must be positive") {
		t.Errorf("KAFKASEND_TIMEOUT=-1s: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = run([]string{"send", "--reply-topic", "", "--timeout", "1s", "/x"}, func(k string) string { return env[k] })
	if code != ExitUsage || !strings.Contains(stderr, "missing --reply-topic") || strings.Contains(stderr, "--brokers") {
		t.Errorf("--reply-topic '': exit %d, stderr %q", code, stderr)
	}
}

func TestSingleDashLongFlags(t *testing.T) {
	root := newRoot(context.Background(), IO{Stdout: io.Discard, Stderr: io.Discard, Getenv: noEnv})
	for _, tc := range []struct{ in, want string }{
		{"send -timeout 5s /x", "send --timeout 5s /x"},
		{"send -fail -brokers=b:1 /x", "send --fail --brokers=b:1 /x"},
		{"send -iv -X PUT -o f /x", "send -iv -X PUT -o f /x"},
		{"send -- -timeout", "send -- -timeout"},
		{"bench -scenario mixed", "bench -scenario mixed"},
	} {
		if got := strings.Join(singleDashLongFlags(root, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReportExitCodeByKind(t *testing.T) {
	seen := map[int]bool{ExitOK: true, ExitError: true, ExitUsage: true, ExitHTTPError: true}
	for _, k := range kindExitCodes {
		var b bytes.Buffer
		err := fmt.Errorf("awaiting: %w", &client.Error{Kind: k.kind, Message: "m", JobID: "J"})
		if code := report(err, &b); code != k.code {
			t.Errorf("%s: exit %d, want %d", k.kind, code, k.code)
		}
		if b.String() != "kafkasend: awaiting: "+string(k.kind)+": m (job J)\n" {
			t.Errorf("%s: stderr %q", k.kind, b.String())
		}
		if seen[k.code] {
			t.Errorf("exit code %d used twice", k.code)
		}
		seen[k.code] = true
	}
	if code := report(&client.Error{Kind: wire.ErrorKind("new_kind")}, io.Discard); code != 10 {
		t.Errorf("an unknown kind: exit %d, want internal's 10", code)
	}
	if code := report(errors.New("kafka: client has run out of available brokers"), io.Discard); code != ExitError {
		t.Errorf("a Kafka failure: exit %d", code)
	}
	_, stdout, _ := run([]string{"--help"}, noEnv)
	for _, k := range kindExitCodes {
		if !strings.Contains(stdout, fmt.Sprintf("%-3d the portal answered with an error response of kind %s", k.code, k.kind)) {
			t.Errorf("--help does not document exit %d (%s)", k.code, k.kind)
		}
	}
}

func TestVersionAndCompletion(t *testing.T) {
	_, v1, _ := run([]string{"--version"}, noEnv)
	code, v2, _ := run([]string{"version"}, noEnv)
	if code != ExitOK || !strings.HasPrefix(v1, "kafkasend ") || v1 != v2 {
		t.Errorf("--version %q, version %q (exit %d)", v1, v2, code)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, stderr := run([]string{"completion", shell}, noEnv)
		if code != ExitOK || !strings.Contains(out, "kafkasend") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), stderr)
		}
	}
	// Completion of flags and commands works through cobra's __complete.
	_, out, _ := run([]string{"__complete", "send", "--re"}, noEnv)
	if !strings.Contains(out, "--request") || !strings.Contains(out, "--reply-topic") {
		t.Errorf("completing send --re: %q", out)
	}
	_, out, _ = run([]string{"__complete", "send", "-X", ""}, noEnv)
	if !strings.Contains(out, "PATCH") {
		t.Errorf("completing -X: %q", out)
	}
}
