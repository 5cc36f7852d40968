package compose_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// sample is one line of a scrape: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// samples is a scrape by metric name (histograms by their _count, _sum and
// _bucket lines).
type samples map[string][]sample

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)`)

// parseSamples reads the Prometheus text format's sample lines with their values.
func parseSamples(text string, into samples) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil || strings.HasPrefix(m[1], "#") {
			continue
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, lp := range labelPair.FindAllStringSubmatch(m[3], -1) {
			labels[lp[1]] = lp[2]
		}
		into[m[1]] = append(into[m[1]], sample{labels: labels, value: v})
	}
}

// saneMetric is a metric the operations issue names, with the labels it must carry
// (an empty value: the label exists) and what its value must be after the live
// scenario (a command, seeded data, discovery traffic, the relay and the consumer
// groups caught up, Redis on and healthy).
type saneMetric struct {
	name   string
	labels map[string]string
	ok     func(float64) bool
	want   string
}

func (m saneMetric) String() string {
	var ls []string
	for _, k := range sortedKeys(m.labels) {
		if v := m.labels[k]; v != "" {
			ls = append(ls, fmt.Sprintf("%s=%q", k, v))
		} else {
			ls = append(ls, k)
		}
	}
	return m.name + "{" + strings.Join(ls, ",") + "}"
}

func positive(v float64) bool     { return v > 0 }
func nonNegative(v float64) bool  { return v >= 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
func breakerState(v float64) bool { return v == 0 || v == 1 || v == 2 }

// operatedMetrics are the metrics of the "Operating MediaMesh" section and of
// issue 6 ("Metrics"), which every deployment of the compose stack exposes.
var operatedMetrics = []saneMetric{
	{"mediamesh_http_requests_total", map[string]string{"method": "GET", "route": "", "status": "200"}, positive, "> 0"},
	{"mediamesh_http_requests_total", map[string]string{"method": "POST", "route": "/v1/programs", "status": "201"}, positive, "> 0 (the command)"},
	{"mediamesh_http_request_duration_seconds_count", map[string]string{"route": "", "status": "200"}, positive, "> 0 observations"},
	{"mediamesh_http_request_duration_seconds_bucket", map[string]string{"route": "", "status": "", "le": "+Inf"}, positive, "> 0"},
	{"mediamesh_cache_requests_total", map[string]string{"layer": "memory", "result": "hit"}, positive, "> 0"},
	{"mediamesh_cache_requests_total", map[string]string{"layer": "memory", "result": "miss"}, positive, "> 0"},
	{"mediamesh_cache_requests_total", map[string]string{"layer": "redis", "result": ""}, positive, "> 0 (Redis on)"},
	{"mediamesh_eventstore_append_duration_seconds_count", map[string]string{"result": "ok"}, positive, "> 0 (the command's append)"},
	{"mediamesh_relay_lag_events", nil, nonNegative, ">= 0"},
	{"mediamesh_projection_position", map[string]string{"projection": "catalog", "version": "1"}, positive, "> 0"},
	{"mediamesh_projection_position", map[string]string{"projection": "editorial", "version": "1"}, positive, "> 0"},
	{"mediamesh_projection_position", map[string]string{"projection": "search", "version": "1"}, positive, "> 0"},
	{"mediamesh_projection_lag_events", map[string]string{"projection": "catalog", "version": "1"}, nonNegative, ">= 0"},
	{"mediamesh_projection_lag_seconds", map[string]string{"projection": "catalog", "version": "1"}, nonNegative, ">= 0"},
	{"mediamesh_projection_serving", map[string]string{"projection": "catalog", "version": "1"}, func(v float64) bool { return v == 1 }, "1"},
	{"mediamesh_projection_dead_letters", map[string]string{"projection": "catalog", "version": "1"}, func(v float64) bool { return v == 0 }, "0"},
	{"mediamesh_consumer_lag", map[string]string{"group": "", "topic": "content.events", "partition": ""}, nonNegative, ">= 0"},
	{"mediamesh_freshness_seconds_count", map[string]string{"sink": "catalog"}, positive, "> 0 observations"},
	{"mediamesh_freshness_seconds_count", map[string]string{"sink": "editorial"}, positive, "> 0 observations"},
	{"mediamesh_freshness_seconds_count", map[string]string{"sink": "search"}, positive, "> 0 observations"},
	{"mediamesh_freshness_seconds_count", map[string]string{"sink": "redis"}, positive, "> 0 observations (the documents)"},
	{"mediamesh_db_pool_total_conns", map[string]string{"pool": "primary"}, positive, ">= 1"},
	{"mediamesh_db_pool_acquires_total", map[string]string{"pool": "primary"}, positive, "> 0"},
	{"mediamesh_redis_errors_total", map[string]string{"kind": "command"}, nonNegative, "present (0 while Redis is healthy)"},
	{"mediamesh_circuit_breaker_state", map[string]string{"name": "redis"}, breakerState, "0, 1 or 2"},
}

// uuidLike finds an id in a label value: HTTP metrics must be labelled by route
// pattern, never by path.
var uuidLike = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// unmetOperatedMetrics returns the operatedMetrics that no sample of s meets, and
// the HTTP series labelled by a concrete path.
func unmetOperatedMetrics(s samples) []string {
	var out []string
	for _, m := range operatedMetrics {
		found, good := false, false
		var seen []string
		for _, smp := range s[m.name] {
			match := true
			for k, v := range m.labels {
				got, has := smp.labels[k]
				if !has || (v != "" && got != v) {
					match = false
					break
				}
			}
			if !match {
				continue
			}
			found = true
			seen = append(seen, strconv.FormatFloat(smp.value, 'g', -1, 64))
			if m.ok(smp.value) {
				good = true
				break
			}
		}
		switch {
		case !found:
			out = append(out, fmt.Sprintf("%s: missing", m))
		case !good:
			out = append(out, fmt.Sprintf("%s = %s, want %s", m, strings.Join(seen, ", "), m.want))
		}
	}
	for _, name := range []string{"mediamesh_http_requests_total", "mediamesh_http_request_duration_seconds_count"} {
		for _, smp := range s[name] {
			if uuidLike.MatchString(smp.labels["route"]) {
				out = append(out, fmt.Sprintf("%s route %q: a path, not a route pattern", name, smp.labels["route"]))
			}
		}
	}
	sort.Strings(out)
	return out
}

// readyDependencies is what each role's /health/ready must check in the Kafka mode
// of the compose stack: its own dependencies (more are allowed: blobs where media
// are served). Redis is optional by design and never among them.
var readyDependencies = map[string][]string{
	"command":   {"postgres", "eventstore"},
	"query":     {"postgres"},
	"relay":     {"postgres", "eventstore", "kafka"},
	"projector": {"postgres", "eventstore", "kafka"},
	"ingest":    {"postgres", "eventstore", "kafka"},
}

// unreadyRole says what is wrong with a role's readiness answer (status, JSON body
// {"status", "checks": {name: "ok"}}), or nil when it checked its dependencies.
func unreadyRole(role string, status int, body []byte) error {
	var r struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if status != 200 || json.Unmarshal(body, &r) != nil || r.Status != "ok" {
		return fmt.Errorf("role %s: /health/ready = %d %s", role, status, body)
	}
	for _, dep := range readyDependencies[role] {
		if r.Checks[dep] != "ok" {
			return fmt.Errorf("role %s: /health/ready checks %v, want %s among them", role, r.Checks, dep)
		}
	}
	if _, ok := r.Checks["redis"]; ok {
		return fmt.Errorf("role %s: /health/ready checks redis, which is optional", role)
	}
	return nil
}

// logSecretPassword is the database password of TestLiveMetrics's roles.
const logSecretPassword = "pw-never-logged-7f3a"

// withPassword returns the database URL u with password set.
func withPassword(t *testing.T, u, password string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	user := "postgres"
	if parsed.User != nil {
		user = parsed.User.Username()
	}
	parsed.User = url.UserPassword(user, password)
	return parsed.String()
}

// checkLogsHoldNoSecret fails the test when a role's log (JSON lines on standard
// error) shows one of secrets; it also requires the logs to be JSON with request
// ids, so that the check reads real request logs.
func checkLogsHoldNoSecret(t *testing.T, logs map[string]string, secrets ...string) {
	t.Helper()
	requests := 0
	for role, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("role %s log: %v", role, err)
			continue
		}
		for _, secret := range secrets {
			if secret != "" && bytes.Contains(b, []byte(secret)) {
				t.Errorf("role %s logged a secret (%.12s…)", role, secret)
			}
		}
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Errorf("role %s: a log line is not JSON: %.200s", role, line)
				break
			}
			if id, _ := rec["request_id"].(string); id != "" {
				requests++
			}
		}
	}
	if requests == 0 {
		t.Error("no role logged a request with its request_id")
	}
}
