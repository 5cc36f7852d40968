package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The parsers below never put the raw value into an error: a value may hold a
// password. They say what is wrong and what is expected instead.

func parseListenAddr(v string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", errors.New("want host:port or :port")
	}
	if _, err := parsePort(port); err != nil {
		return "", err
	}
	if strings.ContainsAny(host, " /") {
		return "", errors.New("want host:port or :port")
	}
	return v, nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return n, nil
}

func parseHostPort(v string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return "", fmt.Errorf("%q is not host:port", v)
	}
	if n, err := parsePort(port); err != nil || n == 0 {
		return "", fmt.Errorf("%q is not host:port with a port from 1 to 65535", v)
	}
	return v, nil
}

// parseURL parses an absolute URL with one of schemes and a host, with an error
// that never repeats the value (it may carry a password).
func parseURL(v string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	ok := false
	for _, s := range schemes {
		ok = ok || strings.EqualFold(u.Scheme, s)
	}
	if !ok {
		return nil, fmt.Errorf("URL scheme must be one of %s", strings.Join(schemes, ", "))
	}
	if u.Host == "" {
		return nil, errors.New("URL has no host")
	}
	if u.Port() != "" {
		if n, err := parsePort(u.Port()); err != nil || n == 0 {
			return nil, errors.New("URL port must be from 1 to 65535")
		}
	}
	return u, nil
}

func parsePostgresURL(v string) (string, error) {
	u, err := parseURL(v, "postgres", "postgresql")
	if err != nil {
		return "", err
	}
	if strings.Trim(u.Path, "/") == "" {
		return "", errors.New("URL names no database")
	}
	if _, err := pgx.ParseConfig(v); err != nil {
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return "", fmt.Errorf("rejected by the PostgreSQL driver: %s", msg)
	}
	return v, nil
}

func parseHTTPURL(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if _, err := parseURL(v, "http", "https"); err != nil {
		return "", err
	}
	return strings.TrimRight(v, "/"), nil
}

func parseESDBURL(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	// The client (EventStore-Client-Go v4) takes these two schemes, for KurrentDB too.
	if _, err := parseURL(v, "esdb", "esdb+discover"); err != nil {
		return "", err
	}
	return v, nil
}

func parseRedis(v string) (Redis, error) {
	if strings.EqualFold(v, "off") {
		return Redis{Disabled: true}, nil
	}
	if strings.Contains(v, "://") {
		if strings.Contains(v, ",") {
			return Redis{}, errors.New("want one redis:// URL, or comma-separated host:port cluster addresses, or off")
		}
		u, err := parseURL(v, "redis", "rediss")
		if err != nil {
			return Redis{}, err
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				return Redis{}, errors.New("URL path must be a database number")
			}
		}
		return Redis{URL: v}, nil
	}
	addrs, err := parseList(v, parseHostPort)
	if err != nil {
		return Redis{}, err
	}
	return Redis{Addrs: addrs}, nil
}

// parseList splits a comma-separated list, parsing each non-empty item.
func parseList(v string, item func(string) (string, error)) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	var out []string
	for i, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := item(s)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseEnum[T ~string](v string, allowed ...T) (T, error) {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if strings.EqualFold(v, string(a)) {
			return a, nil
		}
		names[i] = string(a)
	}
	return "", fmt.Errorf("%q is not one of %s", v, strings.Join(names, ", "))
}

func parseInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a whole number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// parseBool reads true/false (and strconv's 1/0, t/f, TRUE/FALSE forms).
func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

func parseDuration(v string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		return 0, fmt.Errorf("%q is not a duration from %s to %s (e.g. 15s, 2m)", v, lo, hi)
	}
	return d, nil
}

func parseLevel(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", v)
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// parseBytes reads a positive size: a number of bytes, or a number with one of the
// units KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000).
func parseBytes(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size from 1 byte to 1TiB (e.g. 1048576, 512KiB, 20MiB, 1GiB)", v)
	}
	return n * mult, nil
}

// formatBytes prints n with the largest binary unit that divides it.
func formatBytes(n int64) string {
	for _, u := range byteUnits[:3] {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// sensitiveParams are query parameters whose values are secrets.
var sensitiveParams = []string{"password", "pass", "passwd", "secret", "key", "token", "apikey", "api_key", "sslpassword"}

// redactURL hides the password of a URL's user info and the values of query
// parameters that carry secrets. A value that does not parse is hidden whole.
func redactURL(v string) string {
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil {
		return redacted
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			for _, s := range sensitiveParams {
				if strings.EqualFold(k, s) {
					q.Set(k, "xxxxx")
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func showRedis(r Redis) string {
	switch {
	case r.Disabled:
		return "off"
	case r.URL != "":
		return redactURL(r.URL)
	default:
		return strings.Join(r.Addrs, ",")
	}
}

func joinMap(items []string, f func(string) string) string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = f(s)
	}
	return strings.Join(out, ",")
}

// parsePath cleans a file path; it does not look at the file (Load does no I/O).
func parsePath(v string) (string, error) {
	if strings.ContainsRune(v, 0) {
		return "", errors.New("a path cannot contain a NUL byte")
	}
	return filepath.Clean(v), nil
}

// parseProxies reads comma-separated CIDRs; a bare address is a prefix of one
// address (/32 or /128). Prefixes are masked (10.1.2.3/8 is 10.0.0.0/8), and an
// IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) becomes its IPv4 form, because the
// HTTP layer compares unmapped peer addresses. Zones (fe80::1%eth0) are refused:
// a peer address never carries one.
func parseProxies(v string) ([]netip.Prefix, error) {
	items, err := parseList(v, func(s string) (string, error) { return s, nil })
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for i, s := range items {
		p, err := parseProxy(s)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseProxy(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR such as 10.0.0.0/8", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix must be /96 or longer", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func joinPrefixes(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}
