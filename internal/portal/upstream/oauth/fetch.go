package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// fetcher asks the token endpoint for a new token. It is the base
// TokenSource of a generation's ReuseTokenSource, which calls it under its
// own mutex, so fetches of one generation never overlap.
type fetcher struct {
	s    *Source
	conf *clientcredentials.Config
}

// Token implements oauth2.TokenSource.
func (f *fetcher) Token() (*oauth2.Token, error) {
	s := f.s
	s.failMu.Lock()
	if time.Now().Before(s.failUntil) {
		err := s.failErr
		s.failMu.Unlock()
		return nil, err
	}
	s.failMu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), oauth2.HTTPClient, s.client), s.opts.FetchTimeout)
	defer cancel()
	tok, err := f.conf.Token(ctx)
	if s.opts.OnFetch != nil {
		s.opts.OnFetch(err == nil)
	}
	if err != nil {
		err = describeFetchError(s.opts.Config.TokenURL, err)
		if s.opts.FailureHoldoff > 0 {
			s.failMu.Lock()
			s.failUntil = time.Now().Add(s.opts.FailureHoldoff)
			s.failErr = err
			s.failMu.Unlock()
		}
		s.log.Error(err, "Fetching an OAuth2 token failed")
		return nil, err
	}
	s.log.V(1).Info("Fetched an OAuth2 token", "expiry", tok.Expiry)
	return tok, nil
}

// FetchError is a token endpoint failure, described without the response
// body (which may echo request parameters) and without credentials.
type FetchError struct {
	// TokenURL is the endpoint that failed.
	TokenURL string
	// Status is the endpoint's HTTP status line, empty when it was not reached.
	Status string
	// Code is the OAuth2 error code ("invalid_client"...), when given.
	Code string
	// Err is the transport error when the endpoint was not reached.
	Err error
}

// Error implements error.
func (e *FetchError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("fetching an OAuth2 token from %s: %v", e.TokenURL, e.Err)
	}
	msg := fmt.Sprintf("fetching an OAuth2 token from %s: the token endpoint answered %s", e.TokenURL, e.Status)
	if e.Code != "" {
		msg += fmt.Sprintf(" (%s)", e.Code)
	}
	return msg
}

// Unwrap returns the transport error, if any.
func (e *FetchError) Unwrap() error { return e.Err }

func describeFetchError(tokenURL string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		fe := &FetchError{TokenURL: tokenURL, Code: sanitizeCode(re.ErrorCode)}
		if re.Response != nil {
			fe.Status = re.Response.Status
		} else {
			fe.Status = "an error"
		}
		return fe
	}
	return &FetchError{TokenURL: tokenURL, Err: err}
}

// sanitizeCode keeps an OAuth2 error code only when it looks like one
// (RFC 6749 codes are short printable ASCII without spaces).
func sanitizeCode(c string) string {
	if len(c) > 64 {
		return ""
	}
	for i := 0; i < len(c); i++ {
		if c[i] <= ' ' || c[i] > '~' {
			return ""
		}
	}
	return c
}
