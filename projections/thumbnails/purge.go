package thumbnails

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Defaults of WebhookOptions.
const (
	DefaultPurgeAttempts   = 5
	DefaultPurgeMinBackoff = 200 * time.Millisecond
	DefaultPurgeMaxBackoff = 5 * time.Second
	DefaultPurgeTimeout    = 10 * time.Second
)

// WebhookOptions tune a WebhookPurger; zero values take the defaults.
type WebhookOptions struct {
	// Client sends the requests (default: a client without a global timeout; each
	// attempt is bounded by Timeout).
	Client *http.Client
	// Attempts bounds the tries of one purge (default 5).
	Attempts int
	// MinBackoff and MaxBackoff bound the wait between tries (200 ms doubling up to
	// 5 s, with jitter); a Retry-After from the webhook is honoured up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Header is sent with every request, e.g. an Authorization the CDN expects.
	Header http.Header
}

// WebhookPurger asks a CDN to purge URLs through a webhook: POST {"urls": [...]}
// as JSON. Any 2xx is success. Timeouts, connection errors, 408, 429 and 5xx are
// retried with exponential backoff, a bounded number of times; any other status is
// final (retrying a request the webhook refuses cannot help).
type WebhookPurger struct {
	endpoint string
	o        WebhookOptions
}

// NewWebhookPurger returns a purger posting to endpoint (MEDIAMESH_CDN_PURGE_URL),
// an absolute http or https URL.
func NewWebhookPurger(endpoint string, o WebhookOptions) (*WebhookPurger, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("purge webhook: %q is not an http or https URL", endpoint)
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultPurgeAttempts
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultPurgeMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultPurgeMaxBackoff, o.MinBackoff)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultPurgeTimeout
	}
	return &WebhookPurger{endpoint: endpoint, o: o}, nil
}

// errFinal marks a response that retrying cannot change.
var errFinal = errors.New("refused")

// Purge posts urls and returns nil once the webhook accepted them, or the last
// error after the attempts ran out.
func (w *WebhookPurger) Purge(ctx context.Context, urls []string) error {
	if len(urls) == 0 {
		return nil
	}
	body, err := json.Marshal(struct {
		URLs []string `json:"urls"`
	}{urls})
	if err != nil {
		return fmt.Errorf("purge webhook: %w", err)
	}
	var last error
	for attempt := 0; attempt < w.o.Attempts; attempt++ {
		var retryAfter time.Duration
		retryAfter, last = w.post(ctx, body)
		if last == nil {
			return nil
		}
		if errors.Is(last, errFinal) || ctx.Err() != nil || attempt == w.o.Attempts-1 {
			break
		}
		wait := w.o.MinBackoff << min(attempt, 20)
		if wait <= 0 || wait > w.o.MaxBackoff {
			wait = w.o.MaxBackoff
		}
		wait = wait/2 + rand.N(wait/2+1)
		if retryAfter > 0 {
			wait = min(retryAfter, w.o.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("purge webhook: %w (last: %w)", ctx.Err(), last)
		case <-t.C:
		}
	}
	return fmt.Errorf("purge webhook %s: %w", w.endpoint, last)
}

// post makes one attempt; it returns the response's Retry-After (if any) and nil
// for a 2xx.
func (w *WebhookPurger) post(ctx context.Context, body []byte) (time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errFinal, err)
	}
	for k, vs := range w.o.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		var ra time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			ra = time.Duration(s) * time.Second
		}
		return ra, fmt.Errorf("status %s", resp.Status)
	default:
		return 0, fmt.Errorf("%w: status %s", errFinal, resp.Status)
	}
}
