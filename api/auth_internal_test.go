package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

// testServer is a server with only what the middlewares need, on a fiber app the
// test adds routes to.
func testServer(t *testing.T, cfg Config, deps Deps) (*server, *fiber.App) {
	t.Helper()
	s := &server{cfg: cfg.withDefaults(), deps: deps, log: slog.New(slog.DiscardHandler)}
	f := fiber.New(fiber.Config{ErrorHandler: s.errorHandler, DisableStartupMessage: true})
	f.Use(s.requestID)
	return s, f
}

func get(t *testing.T, f *fiber.App, path string, hdr map[string][]string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, vs := range hdr {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	res, err := f.Test(r, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRequireAdmin checks the role middleware on an admin-only route (the ops
// routes of a later issue use authorize(RoleAdmin)): an editor is 403, like a
// viewer; only an admin passes.
func TestRequireAdmin(t *testing.T) {
	t.Parallel()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := jwtkeys.NewSigner(key, "mediamesh", "mediamesh")
	v, _ := jwtkeys.NewVerifier("mediamesh", "mediamesh", []ed25519.PublicKey{signer.PublicKey()})
	s, f := testServer(t, Config{}, Deps{Tokens: v})
	ran := 0
	f.Get("/ops", s.authorize(RoleAdmin), func(c *fiber.Ctx) error { ran++; return c.SendString("ok") })
	for _, tc := range []struct {
		role   string
		status int
	}{
		{"", http.StatusUnauthorized},
		{RoleViewer, http.StatusForbidden},
		{RoleEditor, http.StatusForbidden},
		{"superuser", http.StatusForbidden},
		{RoleAdmin, http.StatusOK},
	} {
		hdr := map[string][]string{}
		if tc.role != "" {
			tok, err := signer.Mint("u", tc.role, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			hdr["Authorization"] = []string{"Bearer " + tok}
		}
		if status, body := get(t, f, "/ops", hdr); status != tc.status {
			t.Errorf("role %q: %d %s, want %d", tc.role, status, body, tc.status)
		}
	}
	if ran != 1 {
		t.Fatalf("the admin route ran %d times, want once (for the admin)", ran)
	}
}

// TestClientIP: X-Forwarded-For counts only from a trusted peer, and only its
// right-hand entries that trusted proxies appended. (fiber's test connection comes
// from 0.0.0.0.)
func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     []string
		want    string
	}{
		{"no proxies configured: the header is ignored", nil, []string{"203.0.113.9"}, "0.0.0.0"},
		{"untrusted peer: the header is ignored", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []string{"203.0.113.9"}, "0.0.0.0"},
		{"trusted peer without the header", trusted, nil, "0.0.0.0"},
		{"one hop", trusted, []string{"203.0.113.9"}, "203.0.113.9"},
		{"a client-supplied entry is ignored", trusted, []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"inner trusted proxies are skipped", trusted, []string{"198.51.100.1, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"several header lines", trusted, []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"garbage stops at the last good entry", trusted, []string{"203.0.113.9, junk, 10.1.2.3"}, "10.1.2.3"},
		{"all trusted: the leftmost", trusted, []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"port", trusted, []string{"203.0.113.9:8080"}, "203.0.113.9"},
		{"mapped IPv4", trusted, []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"IPv6 is limited by /64", trusted, []string{"[2001:db8:1:2:3:4:5:6]:443"}, "2001:db8:1:2::/64"},
		{"empty entry", trusted, []string{"203.0.113.9,"}, "0.0.0.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := testServer(t, Config{TrustedProxies: tc.trusted}, Deps{})
			f.Get("/ip", func(c *fiber.Ctx) error { return c.SendString(s.clientKey(c)) })
			hdr := map[string][]string{}
			if tc.xff != nil {
				hdr["X-Forwarded-For"] = tc.xff
			}
			if status, got := get(t, f, "/ip", hdr); status != http.StatusOK || got != tc.want {
				t.Fatalf("client %q (%d), want %q", got, status, tc.want)
			}
		})
	}
}
