package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
	qapp "github.com/mediamesh/mediamesh/query/app"
)

// fakeDiscovery answers every discovery query with a fixed body per kind and
// records what it was asked; fail, when set, makes every query fail with it.
type fakeDiscovery struct {
	mu    sync.Mutex
	calls []any
	fail  error
	plays []qapp.RecordPlay
}

func newFakeDiscovery() *fakeDiscovery { return &fakeDiscovery{} }

// bigBody is large enough to be compressed.
var bigBody = `{"items":[` + strings.Repeat(`{"id":"0190f1f4-0000-7000-8000-000000000001","title":"A long enough title"},`, 9) +
	`{"id":"x"}],"page":1,"limit":20,"total":10}`

func (f *fakeDiscovery) record(q any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, q)
	return f.fail
}

func (f *fakeDiscovery) last() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

func fakeAnswer(body string, after *qapp.WritePoint) qapp.Answer {
	return qapp.Answer{Response: qapp.NewResponse([]byte(body), qapp.Snapshot{Source: qapp.SourcePostgres, Position: 42, Includes: true}),
		Position: 42, Consistent: after != nil}
}

func (f *fakeDiscovery) ProgramByID(_ context.Context, q qapp.ProgramByID) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	if q.ID != knownProgram {
		return qapp.Answer{}, &qapp.MissingError{What: "program", ID: q.ID, Snapshot: qapp.Snapshot{Position: 41}}
	}
	return fakeAnswer(`{"id":"`+q.ID+`","title":"T"}`, q.After), nil
}

func (f *fakeDiscovery) ProgramEpisodes(_ context.Context, q qapp.ProgramEpisodes) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(bigBody, q.After), nil
}

func (f *fakeDiscovery) EpisodeByID(_ context.Context, q qapp.EpisodeByID) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(`{"id":"`+q.ID+`"}`, q.After), nil
}

func (f *fakeDiscovery) BrowsePrograms(_ context.Context, q qapp.BrowsePrograms) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	if _, _, err := q.Normalize(); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(bigBody, q.After), nil
}

func (f *fakeDiscovery) Search(_ context.Context, q qapp.Search) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	if _, err := q.Normalize(); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(bigBody, q.After), nil
}

func (f *fakeDiscovery) Trending(_ context.Context, q qapp.Ranked) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(bigBody, q.After), nil
}

func (f *fakeDiscovery) Popular(_ context.Context, q qapp.Ranked) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(bigBody, q.After), nil
}

func (f *fakeDiscovery) Categories(_ context.Context, q qapp.Categories) (qapp.Answer, error) {
	if err := f.record(q); err != nil {
		return qapp.Answer{}, err
	}
	return fakeAnswer(`[{"slug":"drama","program_count":1}]`, q.After), nil
}

func (f *fakeDiscovery) RecordPlay(_ context.Context, q qapp.RecordPlay) error {
	if err := f.record(q); err != nil {
		return err
	}
	if _, err := q.Validate(); err != nil {
		return err
	}
	if q.ProgramID != knownProgram {
		return &qapp.MissingError{What: "program", ID: q.ProgramID}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plays = append(f.plays, q)
	return nil
}

func (f *fakeDiscovery) CurrentPosition() int64 { return 40 }

func withDiscovery(d api.Discovery) envOption {
	return func(_ *api.Config, deps *api.Deps) { deps.Discovery = d }
}

func TestDiscoveryHTTPCaching(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		path, cacheControl string
	}{
		{"/v1/programs/" + knownProgram, "public, max-age=30, stale-while-revalidate=30"},
		{"/v1/programs/" + knownProgram + "/episodes?season=2&page=1&limit=5", "public, max-age=30, stale-while-revalidate=30"},
		{"/v1/episodes/" + knownEpisode, "public, max-age=30, stale-while-revalidate=30"},
		{"/v1/programs?category=drama&language=en&tag=noir&sort=title", "public, max-age=30, stale-while-revalidate=30"},
		{"/v1/search?q=nordic", "public, max-age=30, stale-while-revalidate=30"},
		{"/v1/trending?category=drama&limit=10", "public, max-age=60"},
		{"/v1/popular", "public, max-age=60"},
		{"/v1/categories", "public, max-age=60"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			res := e.do(t, req{method: http.MethodGet, path: tc.path})
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			tag := res.header.Get("ETag")
			if !strings.HasPrefix(tag, `"`) || !strings.HasSuffix(tag, `"`) || len(tag) < 10 {
				t.Errorf("ETag %q is not a strong tag", tag)
			}
			if got := res.header.Get("Cache-Control"); got != tc.cacheControl {
				t.Errorf("Cache-Control %q, want %q", got, tc.cacheControl)
			}
			if got := res.header.Get("X-Projection-Position"); got != "42" {
				t.Errorf("X-Projection-Position %q", got)
			}
			if got := res.header.Get("Vary"); got != "Accept-Encoding" {
				t.Errorf("Vary %q", got)
			}
			if got := res.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q", got)
			}
			if !json.Valid(res.body) {
				t.Errorf("body %q is not JSON", res.body)
			}
			again := e.do(t, req{method: http.MethodGet, path: tc.path, headers: map[string]string{"If-None-Match": tag}})
			if again.status != http.StatusNotModified || len(again.body) != 0 || again.header.Get("ETag") != tag {
				t.Errorf("If-None-Match of the current tag: %d %q, ETag %q", again.status, again.body, again.header.Get("ETag"))
			}
			if again.header.Get("X-Projection-Position") != "42" || again.header.Get("Cache-Control") != tc.cacheControl {
				t.Errorf("304 headers %v", again.header)
			}
			other := e.do(t, req{method: http.MethodGet, path: tc.path, headers: map[string]string{"If-None-Match": `"nope", W/"other"`}})
			if other.status != http.StatusOK || !bytes.Equal(other.body, res.body) {
				t.Errorf("If-None-Match of another tag: %d", other.status)
			}
		})
	}
}

func TestDiscoveryCompression(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := "/v1/popular"
	plain := e.do(t, req{method: http.MethodGet, path: path})
	gunzip := func(b []byte) ([]byte, error) {
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	unbrotli := func(b []byte) ([]byte, error) { return io.ReadAll(brotli.NewReader(bytes.NewReader(b))) }
	tests := []struct {
		accept, encoding string
		decode           func([]byte) ([]byte, error)
	}{
		{"gzip", "gzip", gunzip},
		{"gzip, deflate, br", "br", unbrotli},
		{"br;q=0, gzip;q=0.5", "gzip", gunzip},
		{"identity", "", nil},
		{"br;q=0", "", nil},
	}
	for _, tc := range tests {
		res := e.do(t, req{method: http.MethodGet, path: path, headers: map[string]string{"Accept-Encoding": tc.accept}})
		if got := res.header.Get("Content-Encoding"); got != tc.encoding {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.encoding)
			continue
		}
		body := res.body
		wantTag := plain.header.Get("ETag")
		if tc.decode != nil {
			var err error
			if body, err = tc.decode(res.body); err != nil {
				t.Fatalf("%s: decode: %v", tc.encoding, err)
			}
			wantTag = strings.TrimSuffix(wantTag, `"`) + "-" + tc.encoding + `"`
			if len(res.body) >= len(plain.body) {
				t.Errorf("%s body %d bytes, plain %d", tc.encoding, len(res.body), len(plain.body))
			}
		}
		if !bytes.Equal(body, plain.body) {
			t.Errorf("%s: decoded body differs", tc.accept)
		}
		if got := res.header.Get("ETag"); got != wantTag {
			t.Errorf("%s: ETag %q, want %q", tc.accept, got, wantTag)
		}
		again := e.do(t, req{method: http.MethodGet, path: path, headers: map[string]string{"Accept-Encoding": tc.accept, "If-None-Match": wantTag}})
		if again.status != http.StatusNotModified {
			t.Errorf("%s: If-None-Match of its own tag: %d", tc.accept, again.status)
		}
	}
	small := e.do(t, req{method: http.MethodGet, path: "/v1/categories", headers: map[string]string{"Accept-Encoding": "br, gzip"}})
	if small.header.Get("Content-Encoding") != "" {
		t.Errorf("a %d-byte body was compressed", len(small.body))
	}
}

func TestDiscoveryRejectsBadParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		path  string
		field string
	}{
		{"/v1/programs?limit=0", "limit"},
		{"/v1/programs?limit=51", "limit"},
		{"/v1/programs?limit=-1", "limit"},
		{"/v1/programs?limit=abc", "limit"},
		{"/v1/programs?page=0", "page"},
		{"/v1/programs?sort=popular", "sort"},
		{"/v1/programs?category=Not%20A%20Slug", "category"},
		{"/v1/programs?language=!!", "language"},
		{"/v1/search?limit=51&q=x", "limit"},
		{"/v1/search", "q"},
		{"/v1/search?q=" + strings.Repeat("a", 201), "q"},
		{"/v1/trending?limit=100", "limit"},
		{"/v1/popular?page=0", "page"},
		{"/v1/programs/" + knownProgram + "/episodes?season=0", "season"},
		{"/v1/programs/" + knownProgram + "/episodes?limit=51", "limit"},
	}
	for _, tc := range tests {
		res := e.do(t, req{method: http.MethodGet, path: tc.path})
		p := res.problem(t, http.StatusBadRequest)
		found := false
		for _, f := range p.Errors {
			found = found || f.Field == tc.field
		}
		if !found {
			t.Errorf("%s: problem %+v does not name %s", tc.path, p, tc.field)
		}
		if res.header.Get("X-Projection-Position") == "" {
			t.Errorf("%s: no X-Projection-Position on a 400", tc.path)
		}
	}
	for _, ok := range []string{"/v1/programs?limit=50&page=3", "/v1/programs?limit=1", "/v1/search?q=a&limit=50"} {
		if res := e.do(t, req{method: http.MethodGet, path: ok}); res.status != http.StatusOK {
			t.Errorf("%s: %d %s", ok, res.status, res.body)
		}
	}
}

func TestDiscoveryErrors(t *testing.T) {
	t.Parallel()
	f := newFakeDiscovery()
	e := newEnv(t, withDiscovery(f))
	res := e.do(t, req{method: http.MethodGet, path: "/v1/programs/0190f1f4-0000-7000-8000-0000000000ff"})
	res.problem(t, http.StatusNotFound)
	if res.header.Get("X-Projection-Position") != "41" {
		t.Errorf("404 X-Projection-Position %q, want the read's 41", res.header.Get("X-Projection-Position"))
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("404 Cache-Control %q", res.header.Get("Cache-Control"))
	}
	e.do(t, req{method: http.MethodGet, path: "/v1/programs/not-a-uuid"}).problem(t, http.StatusNotFound)
	e.do(t, req{method: http.MethodGet, path: "/v1/episodes/not-a-uuid/"}).problem(t, http.StatusNotFound)

	f.fail = fmt.Errorf("read: %w", qapp.ErrUnavailable)
	res = e.do(t, req{method: http.MethodGet, path: "/v1/programs"})
	res.problem(t, http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestDiscoveryConsistencyTokens(t *testing.T) {
	t.Parallel()
	f := newFakeDiscovery()
	e := newEnv(t, withDiscovery(f))
	point := api.WritePoint{StreamID: "program-" + knownProgram, Version: 7, Position: 1234}
	token := e.tokens.Sign(point)
	path := "/v1/programs/" + knownProgram

	res := e.do(t, req{method: http.MethodGet, path: path, headers: map[string]string{api.HeaderConsistencyToken: token}})
	if res.status != http.StatusOK || res.header.Get("Cache-Control") != "private, no-cache" {
		t.Fatalf("with a token: %d, Cache-Control %q", res.status, res.header.Get("Cache-Control"))
	}
	q, ok := f.last().(qapp.ProgramByID)
	if !ok || q.After == nil || *q.After != (qapp.WritePoint{StreamID: point.StreamID, Version: 7, Position: 1234}) {
		t.Fatalf("query got %+v", f.last())
	}
	if q.Base != "http://example.com" {
		t.Errorf("base URL %q", q.Base)
	}

	forged := token[:len(token)-2] + "AA"
	for _, bad := range []string{forged, "garbage", e.tokens.Sign(point) + "x"} {
		res := e.do(t, req{method: http.MethodGet, path: "/v1/search?q=x", headers: map[string]string{api.HeaderConsistencyToken: bad}})
		p := res.problem(t, http.StatusBadRequest)
		if len(p.Errors) != 1 || p.Errors[0].Field != api.HeaderConsistencyToken {
			t.Errorf("forged token problem %+v", p)
		}
	}

	f.fail = fmt.Errorf("wait: %w", qapp.ErrNotConsistent)
	res = e.do(t, req{method: http.MethodGet, path: "/v1/categories", headers: map[string]string{api.HeaderConsistencyToken: token}})
	res.problem(t, http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Error("consistency timeout without Retry-After")
	}
}

func TestRecordPlay(t *testing.T) {
	t.Parallel()
	f := newFakeDiscovery()
	e := newEnv(t, withDiscovery(f), withConfig(func(c *api.Config) {
		c.RateLimits.Plays = ratelimit.Limit{Rate: 1, Burst: 3, Period: time.Hour}
	}))
	play := func(body string, headers map[string]string) response {
		if headers == nil {
			headers = jsonHeaders()
		}
		return e.do(t, req{method: http.MethodPost, path: "/v1/plays", body: body, headers: headers})
	}
	res := play(`{"program_id":"`+knownProgram+`","session_id":"s-1","position_seconds":30}`, nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("play: %d %s", res.status, res.body)
	}
	if res.header.Get("X-RateLimit-Limit") == "" {
		t.Error("no rate limit headers")
	}
	if len(f.plays) != 1 || f.plays[0].SessionID != "s-1" || *f.plays[0].PositionSeconds != 30 {
		t.Fatalf("plays %+v", f.plays)
	}
	play(`{"program_id":"`+knownProgram+`","session_id":"s-1","extra":1}`, nil).problem(t, http.StatusBadRequest)
	play(`{"program_id":"`+knownProgram+`","session_id":"s-1"}`, map[string]string{"Content-Type": "text/plain"}).problem(t, http.StatusUnsupportedMediaType)
	// The burst of 3 is spent: the next is refused before anything else is looked at.
	res = play(`{"program_id":"nope","session_id":""}`, nil)
	res.problem(t, http.StatusTooManyRequests)
	if res.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}

	e2 := newEnv(t, withDiscovery(f))
	p := e2.do(t, req{method: http.MethodPost, path: "/v1/plays", body: `{"program_id":"nope","session_id":""}`, headers: jsonHeaders()}).
		problem(t, http.StatusBadRequest)
	if len(p.Errors) != 2 {
		t.Errorf("invalid play problem %+v", p)
	}
	e2.do(t, req{method: http.MethodPost, path: "/v1/plays", body: `{"program_id":"0190f1f4-0000-7000-8000-0000000000ff","session_id":"s"}`,
		headers: jsonHeaders()}).problem(t, http.StatusNotFound)
}

// TestDiscoveryKeepAlive serves on a real listener: a client's requests share one
// connection.
func TestDiscoveryKeepAlive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.app.Listener(ln) }()
	t.Cleanup(func() { _ = e.app.Shutdown() })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	reused := 0
	for i := range 5 {
		var got bool
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { got = info.Reused }}
		r, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet,
			"http://"+ln.Addr().String()+"/v1/programs/"+knownProgram, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Close {
			t.Fatalf("request %d: %d, close %v", i, res.StatusCode, res.Close)
		}
		if got {
			reused++
		}
	}
	if reused != 4 {
		t.Errorf("%d of 4 later requests reused the connection", reused)
	}
}

// TestDiscoveryNeedsRateLimiter: serving plays without a limiter is a wiring
// mistake.
func TestDiscoveryNeedsRateLimiter(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic")
		}
	}()
	api.New(api.Config{ConsistencySecret: testSecret}, api.Deps{Discovery: newFakeDiscovery()})
}

// TestDiscoveryBaseURL: the base of relative asset URLs in discovery answers is the
// one upload responses use: X-Forwarded-Proto and X-Forwarded-Host count only from
// a trusted proxy, and a host that could change a URL's meaning is not used.
func TestDiscoveryBaseURL(t *testing.T) {
	t.Parallel()
	fwd := map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.com"}
	for _, tc := range []struct {
		name    string
		proxies []netip.Prefix
		headers map[string]string
		want    string
	}{
		{"untrusted peer", nil, fwd, "http://example.com"},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}, fwd, "https://www.example.com"},
		{"trusted proxy, bad host", []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")},
			map[string]string{"X-Forwarded-Host": "evil.example/x?"}, "http://example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeDiscovery()
			e := newEnv(t, withDiscovery(f), withConfig(func(c *api.Config) { c.TrustedProxies = tc.proxies }))
			if res := e.do(t, req{method: http.MethodGet, path: "/v1/programs/" + knownProgram, headers: tc.headers}); res.status != http.StatusOK {
				t.Fatalf("GET: %d %s", res.status, res.body)
			}
			if q, ok := f.last().(qapp.ProgramByID); !ok || q.Base != tc.want {
				t.Errorf("base URL of %+v, want %q", f.last(), tc.want)
			}
		})
	}
}
