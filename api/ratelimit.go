package api

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// Rate limit headers. X-RateLimit-Reset is in seconds from now (delta seconds, as
// in the IETF RateLimit header draft), not an epoch: it needs no synchronized clock.
const (
	HeaderRateLimitLimit     = "X-RateLimit-Limit"
	HeaderRateLimitRemaining = "X-RateLimit-Remaining"
	HeaderRateLimitReset     = "X-RateLimit-Reset"
)

// Rate limit scopes: each is one bucket per client IP, shared by its routes.
const (
	// ScopeAuth covers register, login and refresh together.
	ScopeAuth = "auth"
	// ScopePlays covers POST /v1/plays.
	ScopePlays = "plays"
	// ScopePublic covers the other public routes (discovery, the JWK Set).
	ScopePublic = "public"
)

// Default limits per client IP. Auth is API.md's 100 per minute with a burst of
// 100. Plays and public reads are generous on purpose: many users share one IP
// behind carrier-grade NAT or an office proxy, and a read limit is there to stop
// floods, not people.
var (
	DefaultAuthLimit   = ratelimit.PerMinute(100, 100)
	DefaultPlaysLimit  = ratelimit.PerMinute(600, 100)
	DefaultPublicLimit = ratelimit.PerMinute(1200, 300)
)

// RateLimits are the limits per client IP of each scope; a zero Limit means its
// default.
type RateLimits struct {
	Auth, Plays, Public ratelimit.Limit
}

func (r RateLimits) withDefaults() RateLimits {
	if r.Auth == (ratelimit.Limit{}) {
		r.Auth = DefaultAuthLimit
	}
	if r.Plays == (ratelimit.Limit{}) {
		r.Plays = DefaultPlaysLimit
	}
	if r.Public == (ratelimit.Limit{}) {
		r.Public = DefaultPublicLimit
	}
	return r
}

func (r RateLimits) of(scope string) ratelimit.Limit {
	switch scope {
	case ScopeAuth:
		return r.Auth
	case ScopePlays:
		return r.Plays
	}
	return r.Public
}

// RateLimiter decides whether a request may proceed (ratelimit.Limiter, which
// shares limits through Redis and falls back to in-process limits). It never
// fails: a limiter that cannot decide must decide locally.
type RateLimiter interface {
	Allow(ctx context.Context, key string, limit ratelimit.Limit) ratelimit.Decision
}

// rateLimit is the middleware of one scope: it counts the request against the
// client IP's bucket, sets the X-RateLimit-* headers on every response, and answers
// 429 with Retry-After when the bucket is empty. It runs before the body is read,
// so rejected requests cost next to nothing. Routes of later issues use it too:
// s.rateLimit(ScopePlays) for POST /v1/plays, s.rateLimit(ScopePublic) for
// discovery.
func (s *server) rateLimit(scope string) fiber.Handler {
	if s.limiter == nil {
		panic("api: Deps.RateLimiter is required to serve rate-limited routes (/v1/auth, the JWK Set, …)")
	}
	limit := s.cfg.RateLimits.of(scope)
	return func(c *fiber.Ctx) error {
		d := s.limiter.Allow(c.UserContext(), scope+":"+s.clientKey(c), limit)
		hdr := map[string]string{
			HeaderRateLimitLimit:     strconv.Itoa(limit.Rate),
			HeaderRateLimitRemaining: strconv.Itoa(d.Remaining),
			HeaderRateLimitReset:     strconv.Itoa(ceilSeconds(d.ResetAfter)),
		}
		if !d.Allowed {
			hdr[fiber.HeaderRetryAfter] = strconv.Itoa(max(ceilSeconds(d.RetryAfter), 1))
			return &httpError{status: http.StatusTooManyRequests, kind: "rate-limited",
				detail: "too many requests from this address; retry after the time in Retry-After", headers: hdr}
		}
		for k, v := range hdr {
			c.Set(k, v)
		}
		return c.Next()
	}
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// clientKey is the rate limit key of the request's client: its IP address, or its
// /64 for IPv6, since one subscriber usually holds a whole /64 and could otherwise
// rotate through 2^64 addresses.
func (s *server) clientKey(c *fiber.Ctx) string {
	ip := s.clientIP(c)
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// clientIP is the address of the client that sent the request. It is the TCP
// peer's, unless the peer is one of Config.TrustedProxies: then X-Forwarded-For is
// read from the right (the entries the trusted proxies appended) and the first
// address that is not a trusted proxy is the client's. Entries further left were
// written by the client itself and are ignored, so a client cannot pick its own
// address by sending the header. An entry that does not parse stops the walk at
// the last good one.
func (s *server) clientIP(c *fiber.Ctx) netip.Addr {
	peer, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	peer = peer.Unmap()
	if len(s.cfg.TrustedProxies) == 0 || !s.trusted(peer) {
		return peer
	}
	client := peer
	values := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	for i := len(values) - 1; i >= 0; i-- {
		entries := bytes.Split(values[i], []byte(","))
		for j := len(entries) - 1; j >= 0; j-- {
			addr, ok := parseForwarded(bytes.TrimSpace(entries[j]))
			if !ok {
				return client
			}
			client = addr
			if !s.trusted(addr) {
				return addr
			}
		}
	}
	return client
}

func (s *server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseForwarded parses one X-Forwarded-For entry: an address, possibly with a
// port ("192.0.2.1:1234", "[2001:db8::1]:443").
func parseForwarded(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 64 {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(string(b)); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}
