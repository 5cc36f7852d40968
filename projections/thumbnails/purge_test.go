package thumbnails_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

func TestWebhookPurger(t *testing.T) {
	t.Parallel()
	urls := []string{"https://cdn.example.com/assets/a/small.jpg", "https://cdn.example.com/assets/a/small.webp"}
	tests := []struct {
		name      string
		statuses  []int // answered in turn; the last one repeats
		attempts  int
		wantCalls int
		wantErr   string
	}{
		{"accepted", []int{204}, 5, 1, ""},
		{"retried until accepted", []int{503, 502, 200}, 5, 3, ""},
		{"429 and 408 are retried", []int{429, 408, 202}, 5, 3, ""},
		{"bounded", []int{500}, 4, 4, "500"},
		{"refused is final", []int{403}, 5, 1, "403"},
		{"bad request is final", []int{400}, 5, 1, "400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var calls int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct {
					URLs []string `json:"urls"`
				}
				dec := json.NewDecoder(r.Body)
				dec.DisallowUnknownFields()
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
					r.Header.Get("Authorization") != "Bearer purge-secret" || dec.Decode(&body) != nil ||
					strings.Join(body.URLs, ",") != strings.Join(urls, ",") {
					t.Errorf("unexpected purge request %s %v", r.Method, r.Header)
				}
				mu.Lock()
				st := tc.statuses[min(calls, len(tc.statuses)-1)]
				calls++
				mu.Unlock()
				w.WriteHeader(st)
			}))
			t.Cleanup(srv.Close)
			p, err := thumbnails.NewWebhookPurger(srv.URL+"/purge", thumbnails.WebhookOptions{
				Attempts: tc.attempts, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
				Header: http.Header{"Authorization": {"Bearer purge-secret"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Purge(context.Background(), urls)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls != tc.wantCalls {
				t.Fatalf("%d calls, want %d", calls, tc.wantCalls)
			}
		})
	}
}

func TestWebhookPurgerTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(block); srv.Close() })
	p, _ := thumbnails.NewWebhookPurger(srv.URL, thumbnails.WebhookOptions{Attempts: 2, Timeout: 20 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	start := time.Now()
	if err := p.Purge(context.Background(), []string{"/media/x"}); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("purge took %v", time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Purge(ctx, []string{"/media/x"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if err := p.Purge(context.Background(), nil); err != nil {
		t.Fatalf("nothing to purge: %v", err)
	}
	for _, bad := range []string{"", "ftp://x", "/relative", "http://"} {
		if _, err := thumbnails.NewWebhookPurger(bad, thumbnails.WebhookOptions{}); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
