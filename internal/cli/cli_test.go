package cli

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     []string
		include bool
	}{
		{[]string{"/p"}, []string{"/p"}, false},
		{[]string{"-i", "/p"}, []string{"/p"}, true},
		{[]string{"/p", "-i"}, []string{"/p"}, true},
		{[]string{"--", "-i"}, []string{"-i"}, false},
		{[]string{"-i", "--", "/p", "-x"}, []string{"/p", "-x"}, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		inc := fs.Bool("i", false, "")
		pos, err := parseInterleaved(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != strings.Join(tc.pos, " ") || *inc != tc.include {
			t.Errorf("%q: positional %q, -i %v, err %v; want %q, %v", tc.args, pos, *inc, err, tc.pos, tc.include)
		}
	}
}

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

func TestMainExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	sio := IO{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := Main(context.Background(), nil, sio); code != ExitUsage {
		t.Errorf("no arguments: exit %d", code)
	}
	if code := Main(context.Background(), []string{"help"}, sio); code != ExitOK || !strings.Contains(out.String(), "kafkasend send") {
		t.Errorf("help: exit %d", code)
	}
	errb.Reset()
	if code := Main(context.Background(), []string{"send", "--reply-partition", "-1", "--brokers", "b:1", "--topic", "a", "--reply-topic", "r", "/x"}, sio); code != ExitUsage ||
		!strings.Contains(errb.String(), "reply-partition") {
		t.Errorf("negative partition: exit %d, stderr %q", code, errb.String())
	}
}
