package telemetry

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// RegisterProjections exposes every projection version's position, lag and dead
// letters, read on scrape from status (rebuild.Manager.Status in the composition
// root): mediamesh_projection_position, mediamesh_projection_lag_events,
// mediamesh_projection_lag_seconds, mediamesh_projection_dead_letters and
// mediamesh_projection_serving, labelled by projection and version.
func (m *Metrics) RegisterProjections(status func(ctx context.Context) ([]rebuild.Status, error)) error {
	if status == nil {
		return errNilFunc
	}
	labels := []string{"projection", "version"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "projection", name), help, labels, nil)
	}
	c := &projectionCollector{
		src:      &collected[[]rebuild.Status]{name: "projections", m: m, read: status},
		position: desc("position", "Global position of the last event the projection version applied."),
		lagEv:    desc("lag_events", "Events of the event store the projection version has not applied yet."),
		lagSec:   desc("lag_seconds", "Age of the oldest event the projection version has not applied yet (0 when caught up)."),
		dead:     desc("dead_letters", "Dead letters of the projection version."),
		serving:  desc("serving", "1 for the version that answers reads."),
	}
	return m.reg.Register(c)
}

type projectionCollector struct {
	src                                    *collected[[]rebuild.Status]
	position, lagEv, lagSec, dead, serving *prometheus.Desc
}

func (c *projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.position, c.lagEv, c.lagSec, c.dead, c.serving} {
		ch <- d
	}
}

func (c *projectionCollector) Collect(ch chan<- prometheus.Metric) {
	sts, ok := c.src.get()
	if !ok {
		return
	}
	for _, s := range sts {
		v := strconv.Itoa(s.Version)
		serving := 0.0
		if s.Status == rebuild.StatusServing {
			serving = 1
		}
		ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(s.Position), s.Name, v)
		ch <- prometheus.MustNewConstMetric(c.lagEv, prometheus.GaugeValue, float64(s.LagEvents), s.Name, v)
		ch <- prometheus.MustNewConstMetric(c.lagSec, prometheus.GaugeValue, s.LagSeconds, s.Name, v)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(s.DeadLetters), s.Name, v)
		ch <- prometheus.MustNewConstMetric(c.serving, prometheus.GaugeValue, serving, s.Name, v)
	}
}

// RegisterRelayLag exposes mediamesh_relay_lag_events: the events of the event
// store not yet published to the bus, read on scrape from lag (for example
// func(ctx) (int64, error) { l, err := r.Lag(ctx); return int64(l.Unpublished), err }
// with a projections/relay.Relay).
func (m *Metrics) RegisterRelayLag(lag func(ctx context.Context) (int64, error)) error {
	if lag == nil {
		return errNilFunc
	}
	return m.reg.Register(&gaugeCollector{
		src:  &collected[int64]{name: "relay_lag", m: m, read: lag},
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "relay", "lag_events"), "Events of the event store not yet published to the bus.", nil, nil),
	})
}

type gaugeCollector struct {
	src  *collected[int64]
	desc *prometheus.Desc
}

func (c *gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	if v, ok := c.src.get(); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v))
	}
}

// ConsumerLag is how far one consumer group is behind on one partition: the
// partition's newest offset minus the group's committed offset.
type ConsumerLag struct {
	Group     string
	Topic     string
	Partition int32
	Lag       int64
}

// RegisterConsumerLag exposes mediamesh_consumer_lag{group,topic,partition}, read
// on scrape from lags (KafkaConsumerLag).
func (m *Metrics) RegisterConsumerLag(lags func(ctx context.Context) ([]ConsumerLag, error)) error {
	if lags == nil {
		return errNilFunc
	}
	return m.reg.Register(&consumerLagCollector{
		src: &collected[[]ConsumerLag]{name: "consumer_lag", m: m, read: lags},
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "consumer_lag"),
			"Messages a consumer group has not committed yet, by group, topic and partition.", []string{"group", "topic", "partition"}, nil),
	})
}

type consumerLagCollector struct {
	src  *collected[[]ConsumerLag]
	desc *prometheus.Desc
}

func (c *consumerLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *consumerLagCollector) Collect(ch chan<- prometheus.Metric) {
	lags, ok := c.src.get()
	if !ok {
		return
	}
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), l.Group, l.Topic, strconv.Itoa(int(l.Partition)))
	}
}

// RegisterPool exposes a pgx pool's statistics under pool="name"
// (mediamesh_db_pool_*): connections acquired, idle, constructing, total and
// maximum, and the counters of acquisitions, of those that had to wait for a
// connection (empty) or were cancelled, and of the time spent waiting.
func (m *Metrics) RegisterPool(name string, pool *pgxpool.Pool) error {
	if pool == nil {
		return fmt.Errorf("telemetry: pool %q is nil", name)
	}
	desc := func(n, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "db_pool", n), help, nil, prometheus.Labels{"pool": name})
	}
	return m.reg.Register(&poolCollector{
		stat:         pool.Stat,
		acquired:     desc("acquired_conns", "Connections in use."),
		idle:         desc("idle_conns", "Idle connections."),
		constructing: desc("constructing_conns", "Connections being opened."),
		total:        desc("total_conns", "Open connections."),
		maxConns:     desc("max_conns", "Largest number of connections the pool opens."),
		acquires:     desc("acquires_total", "Connections acquired."),
		empty:        desc("empty_acquires_total", "Acquisitions that waited for a connection to be free or opened."),
		canceled:     desc("canceled_acquires_total", "Acquisitions cancelled while waiting."),
		waited:       desc("acquire_wait_seconds_total", "Time spent acquiring connections."),
	})
}

type poolCollector struct {
	stat                                          func() *pgxpool.Stat
	acquired, idle, constructing, total, maxConns *prometheus.Desc
	acquires, empty, canceled, waited             *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.constructing, c.total, c.maxConns, c.acquires, c.empty, c.canceled, c.waited} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.constructing, float64(s.ConstructingConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.maxConns, float64(s.MaxConns()))
	k(c.acquires, float64(s.AcquireCount()))
	k(c.empty, float64(s.EmptyAcquireCount()))
	k(c.canceled, float64(s.CanceledAcquireCount()))
	k(c.waited, s.AcquireDuration().Seconds())
}
