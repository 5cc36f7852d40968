// Package redis is MediaMesh's Redis adapter: the go-redis v9 universal client built
// from MEDIAMESH_REDIS_URL, the catalog's key space, and the documents store of the
// catalog projection (Documents, the port projections/documents.Store).
//
// Every Redis user goes through go-redis's UniversalClient, so Redis Cluster is only
// configuration: one redis:// URL is one server, comma-separated host:port addresses
// are cluster nodes. Every multi-key operation here (the documents' guarded writes)
// keeps its keys in one hash slot.
package redis

import (
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/infra/config"
)

// ErrDisabled is returned by New and FromConfig for MEDIAMESH_REDIS_URL=off.
var ErrDisabled = errors.New("redis is disabled (MEDIAMESH_REDIS_URL=off)")

// New returns the client that value (MEDIAMESH_REDIS_URL's syntax: "off", one
// redis:// or rediss:// URL, or comma-separated host:port cluster node addresses)
// describes. It does no I/O: go-redis connects on first use, so a Redis that is
// down at start is no error here (the embedded mode uses Redis "when reachable").
func New(value string) (goredis.UniversalClient, error) {
	value = strings.TrimSpace(value)
	switch {
	case strings.EqualFold(value, "off"):
		return nil, ErrDisabled
	case value == "":
		return nil, errors.New("redis: empty address")
	case strings.Contains(value, "://"):
		if strings.Contains(value, ",") {
			return nil, errors.New("redis: want one redis:// URL, or comma-separated host:port cluster addresses, or off")
		}
		return FromConfig(config.Redis{URL: value})
	default:
		var addrs []string
		for _, a := range strings.Split(value, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		return FromConfig(config.Redis{Addrs: addrs})
	}
}

// FromConfig returns the client of a parsed MEDIAMESH_REDIS_URL: a single-node client
// for a URL (its database number, user, password and TLS included), a cluster client
// for node addresses (even one: a cluster's configuration endpoint), ErrDisabled for
// off. Like New it does no I/O.
func FromConfig(c config.Redis) (goredis.UniversalClient, error) {
	switch {
	case c.Disabled:
		return nil, ErrDisabled
	case c.URL != "":
		opt, err := goredis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: parse URL: %w", err)
		}
		failFast(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		return goredis.NewClient(opt), nil
	case len(c.Addrs) > 0:
		for _, a := range c.Addrs {
			if !strings.Contains(a, ":") {
				return nil, fmt.Errorf("redis: cluster node %q is not host:port", a)
			}
		}
		opt := &goredis.UniversalOptions{Addrs: c.Addrs, IsClusterMode: true}
		failFast(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		return goredis.NewUniversalClient(opt), nil
	}
	return nil, errors.New("redis: no URL and no addresses")
}

// Timeouts of the client where the URL sets none. Redis is a cache in front of
// PostgreSQL here: an unreachable server must fail a request fast (the query
// side's circuit breaker then skips Redis), not hold it for go-redis's defaults
// (a 5 s dial, 3 s reads). A healthy server answers in well under a millisecond,
// and the largest pipelines we send (a documents batch) in a few.
const (
	dialTimeout = time.Second
	ioTimeout   = time.Second
)

// failFast sets the zero timeouts among dial, read, write and pool.
func failFast(dial, read, write, pool *time.Duration) {
	for _, f := range []struct {
		d *time.Duration
		v time.Duration
	}{{dial, dialTimeout}, {read, ioTimeout}, {write, ioTimeout}, {pool, ioTimeout}} {
		if *f.d == 0 {
			*f.d = f.v
		}
	}
}
