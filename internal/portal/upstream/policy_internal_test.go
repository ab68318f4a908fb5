package upstream

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestParseRetryAfter(t *testing.T) {
	g := NewWithT(t)
	g.Expect(parseRetryAfter("")).To(BeZero())
	g.Expect(parseRetryAfter("2")).To(Equal(2 * time.Second))
	g.Expect(parseRetryAfter("-5")).To(BeZero())
	g.Expect(parseRetryAfter("soon")).To(BeZero())
	g.Expect(parseRetryAfter("99999999999")).To(Equal(24 * time.Hour))
	g.Expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT")).To(BeZero(), "a date in the past")
	future := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	g.Expect(parseRetryAfter(future)).To(BeNumerically("~", 30*time.Second, 2*time.Second))
}

func TestSameOriginUsesDefaultPorts(t *testing.T) {
	g := NewWithT(t)
	b, err := parseBase("https://API.example/v1/")
	g.Expect(err).NotTo(HaveOccurred())
	for raw, same := range map[string]bool{
		"https://api.example/v1/x":     true,
		"https://api.example:443/v1/x": true,
		"HTTPS://Api.Example/v1":       true,
		"http://api.example/v1/x":      false,
		"https://api.example:8443/v1":  false,
		"https://api.example.evil/v1":  false,
		"https://evil/v1":              false,
	} {
		u, err := url.Parse(raw)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(b.sameOrigin(u)).To(Equal(same), raw)
	}
	g.Expect(b.underBase("/v1")).To(BeTrue())
	g.Expect(b.underBase("/v1/x")).To(BeTrue())
	g.Expect(b.underBase("/v10")).To(BeFalse(), "a sibling with the same prefix is outside")
	g.Expect(b.underBase("/")).To(BeFalse())
}

func TestParseBaseRefusesAmbiguousBases(t *testing.T) {
	for _, raw := range []string{"", "api.example/v1", "ftp://api.example", "https://u:p@api.example", "https://api.example/?a=1", "https://api.example/#f"} {
		if _, err := parseBase(raw); err == nil {
			t.Errorf("parseBase(%q) succeeded", raw)
		}
	}
}
