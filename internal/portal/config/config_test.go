package config

import (
	"strings"
	"testing"
)

const valid = `
kafka:
  brokers: ["127.0.0.1:9092"]
  consumerGroup: g
topics: {requests: req, replies: rep}
upstream:
  baseURL: https://api.example.test/v1
`

func TestParseFillsDefaults(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if c.Concurrency.MaxInFlight != 100 || c.Timeouts.Request.Duration.Minutes() != 15 || c.Retries.Attempts != 3 {
		t.Errorf("defaults not applied: %+v", c)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("rendered config does not parse back: %v\n%s", err, out)
	}
	if again.Upstream.BaseURL != c.Upstream.BaseURL || again.Timeouts != c.Timeouts {
		t.Errorf("round trip changed the config")
	}
}

func TestParseRejectsBadConfigNamingTheField(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown field":             {valid + "bogus: 1\n", "bogus"},
		"http upstream":             {strings.Replace(valid, "https://", "http://", 1), "upstream.baseURL: http is refused"},
		"relative upstream":         {strings.Replace(valid, "https://api.example.test/v1", "/v1", 1), "upstream.baseURL: must be an absolute URL"},
		"no brokers":                {strings.Replace(valid, `["127.0.0.1:9092"]`, "[]", 1), "kafka.brokers"},
		"bad initial offset":        {strings.Replace(valid, "consumerGroup: g", "consumerGroup: g\n  initialOffset: middle", 1), "kafka.initialOffset"},
		"zero in flight":            {valid + "concurrency: {maxInFlight: 0}\n", "concurrency.maxInFlight"},
		"budget below request cap":  {valid + "concurrency: {maxBytes: 1024}\n", "concurrency.maxBytes"},
		"bad sasl":                  {strings.Replace(valid, "consumerGroup: g", "consumerGroup: g\n  sasl: {mechanism: GSSAPI, usernameFile: u, passwordFile: p}", 1), "kafka.sasl.mechanism"},
		"backoff order":             {valid + "retries: {backoff: 5s, maxBackoff: 1s}\n", "retries: need 0 <= backoff <= maxBackoff"},
		"http token URL":            {valid + "oauth: {tokenURL: 'http://login.example.test/t', clientIDFile: i, clientSecretFile: s}\n", "oauth.tokenURL: http is refused unless oauth.allowInsecureHTTP"},
		"session timeout too short": {strings.Replace(valid, "consumerGroup: g", "consumerGroup: g\n  sessionTimeout: 2s", 1), "kafka.sessionTimeout"},
		"heartbeat too slow":        {strings.Replace(valid, "consumerGroup: g", "consumerGroup: g\n  heartbeatInterval: 5s", 1), "kafka.heartbeatInterval"},
		"unknown protocol":          {strings.Replace(valid, "consumerGroup: g", "consumerGroup: g\n  rebalanceProtocol: range", 1), "kafka.rebalanceProtocol"},
		"zero lease":                {valid + "timeouts: {handoverLease: 0s}\n", "timeouts.handoverLease"},
		"empty reply prefix":        {strings.Replace(valid, "replies: rep}", "replies: rep, allowedReplyTopicPrefixes: ['']}", 1), "allowedReplyTopicPrefixes[0]"},
		"Authorization with oauth": {strings.Replace(valid, "baseURL: https://api.example.test/v1", "baseURL: https://api.example.test/v1\n  headers: {authorization: 'Bearer x'}", 1) +
			"oauth: {tokenURL: 'https://login.example.test/t', clientIDFile: i, clientSecretFile: s}\n", "upstream.headers: Authorization conflicts with oauth"},
		"Authorization file with oauth": {strings.Replace(valid, "baseURL: https://api.example.test/v1", "baseURL: https://api.example.test/v1\n  headerFiles: {Authorization: /k}", 1) +
			"oauth: {tokenURL: 'https://login.example.test/t', clientIDFile: i, clientSecretFile: s}\n", "upstream.headerFiles: Authorization conflicts with oauth"},
		"client_secret param":    {valid + "oauth: {tokenURL: 'https://login.example.test/t', clientIDFile: i, clientSecretFile: s, endpointParams: {client_secret: [x]}}\n", "oauth.endpointParams: client_secret is set by the portal"},
		"scope param and scopes": {valid + "oauth: {tokenURL: 'https://login.example.test/t', clientIDFile: i, clientSecretFile: s, scopes: [a], endpointParams: {scope: [b]}}\n", "oauth.endpointParams: scope conflicts"},
		"bad http2":              {strings.Replace(valid, "baseURL: https://api.example.test/v1", "baseURL: https://api.example.test/v1\n  http2: h2c", 1), "upstream.http2: must be auto, always or never"},
		"bad rate limit":         {strings.Replace(valid, "baseURL: https://api.example.test/v1", "baseURL: https://api.example.test/v1\n  rateLimit: {requestsPerSecond: 0}", 1), "upstream.rateLimit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestHTTPTokenURLNeedsOptIn(t *testing.T) {
	c, err := Parse([]byte(valid + "oauth: {tokenURL: 'http://127.0.0.1:1/t', clientIDFile: i, clientSecretFile: s, allowInsecureHTTP: true}\n"))
	if err != nil {
		t.Fatalf("opt-in refused: %v", err)
	}
	if !c.OAuth.AllowInsecureHTTP {
		t.Error("allowInsecureHTTP not parsed")
	}
}

func TestReplyTopicAllowed(t *testing.T) {
	tp := Topics{Replies: "orders.replies", AllowedReplyTopics: []string{"audit.replies"}, AllowedReplyTopicPrefixes: []string{"team-a."}}
	for topic, want := range map[string]bool{
		"": true, "orders.replies": true, "audit.replies": true, "team-a.x": true,
		"orders.requests": false, "team-b.x": false, "audit.replies2": false, "__consumer_offsets": false,
	} {
		if got := tp.ReplyTopicAllowed(topic); got != want {
			t.Errorf("ReplyTopicAllowed(%q) = %v, want %v", topic, got, want)
		}
	}
	if (Topics{Replies: "r"}).ReplyTopicAllowed("other") {
		t.Error("by default only the replies topic is allowed")
	}
}
