package compose_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
)

// requirement is what one selector or grouping of a PromQL expression needs from
// the scrape: a series named metric carrying labels (an empty value: the label
// exists; otherwise exactly that value).
type requirement struct {
	metric string
	labels map[string]string
	from   string
}

func (r requirement) String() string {
	var ls []string
	for _, k := range sortedKeys(r.labels) {
		if v := r.labels[k]; v != "" {
			ls = append(ls, fmt.Sprintf("%s=%q", k, v))
		} else {
			ls = append(ls, k)
		}
	}
	return fmt.Sprintf("%s{%s} (%s)", r.metric, strings.Join(ls, ","), r.from)
}

var (
	selectorRe = regexp.MustCompile(`\b(mediamesh_[a-zA-Z0-9_]+)(\{([^}]*)\})?`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	groupingRe = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
)

// targetLabels are added by Prometheus (job, instance, the scrape config's role)
// or by histograms (le): the exporter does not carry them.
var targetLabels = map[string]bool{"job": true, "instance": true, "role": true, "le": true}

// requirementsOf returns what expr needs: each selector's metric with its matched
// labels (an equality matcher's value exactly), and each `by` label on one of the
// expression's metrics.
func requirementsOf(expr, from string) []requirement {
	var reqs []requirement
	var metrics []string
	for _, m := range selectorRe.FindAllStringSubmatch(expr, -1) {
		r := requirement{metric: m[1], labels: map[string]string{}, from: from}
		for _, mm := range matcherRe.FindAllStringSubmatch(m[3], -1) {
			if targetLabels[mm[1]] {
				continue
			}
			if mm[2] == "=" {
				r.labels[mm[1]] = mm[3]
			} else {
				r.labels[mm[1]] = ""
			}
		}
		reqs = append(reqs, r)
		metrics = append(metrics, m[1])
	}
	for _, g := range groupingRe.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			l = strings.TrimSpace(l)
			if l == "" || targetLabels[l] {
				continue
			}
			// The label must be on one of the expression's metrics: expressed as a
			// requirement on any of them (see satisfied).
			reqs = append(reqs, requirement{metric: strings.Join(metrics, "|"), labels: map[string]string{l: ""}, from: from + ", by (" + l + ")"})
		}
	}
	return reqs
}

// requiredSeries is everything the dashboard's queries and the alert and recording
// rules read from MediaMesh's own metrics.
func requiredSeries(t *testing.T) []requirement {
	t.Helper()
	var reqs []requirement
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Alert  string `yaml:"alert"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			reqs = append(reqs, requirementsOf(r.Expr, "alerts.yml "+r.Record+r.Alert)...)
		}
	}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			reqs = append(reqs, requirementsOf(tg.Expr, "dashboard panel "+p.Title)...)
		}
	}
	if len(reqs) < 10 {
		t.Fatalf("found only %d metric references in the dashboard and the rules", len(reqs))
	}
	return reqs
}

// series is a scrape: metric name → the label sets of its series.
type series map[string][]map[string]string

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseExposition reads the Prometheus text format's sample lines.
func parseExposition(text string, into series) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := seriesLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, lp := range labelPair.FindAllStringSubmatch(m[3], -1) {
			labels[lp[1]] = lp[2]
		}
		into[m[1]] = append(into[m[1]], labels)
	}
}

// satisfied reports whether some series of one of r's metrics carries r's labels.
func satisfied(r requirement, s series) bool {
	for _, name := range strings.Split(r.metric, "|") {
		for _, labels := range s[name] {
			ok := true
			for k, v := range r.labels {
				got, has := labels[k]
				if !has || (v != "" && got != v) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
	}
	return false
}

func TestRequirementsOf(t *testing.T) {
	t.Parallel()
	got := requirementsOf(`sum by (layer, le) (rate(mediamesh_cache_requests_total{result="hit",status=~"5..",role="q"}[5m])) / mediamesh_x`, "test")
	want := []string{
		`mediamesh_cache_requests_total{result="hit",status} (test)`,
		`mediamesh_x{} (test)`,
		`mediamesh_cache_requests_total|mediamesh_x{layer} (test, by (layer))`,
	}
	var gotS []string
	for _, r := range got {
		gotS = append(gotS, r.String())
	}
	if !slices.Equal(gotS, want) {
		t.Fatalf("requirements\n%q\nwant\n%q", gotS, want)
	}
	s := series{}
	parseExposition("# HELP x\nmediamesh_cache_requests_total{layer=\"local\",result=\"hit\",status=\"500\"} 3\nmediamesh_x 1\n", s)
	for _, r := range got {
		if !satisfied(r, s) {
			t.Errorf("%s not satisfied by %v", r, s)
		}
	}
	if satisfied(requirement{metric: "mediamesh_cache_requests_total", labels: map[string]string{"result": "miss"}}, s) {
		t.Error("a value that is not in the scrape satisfied an equality matcher")
	}
}

// TestLiveMetrics starts MediaMesh's roles as the compose stack runs them (every
// `serve --role` of compose.yaml, on Kafka — an in-process Kafka-protocol broker —
// and a fresh database), seeds demo data, sends a little traffic of every kind, and
// scrapes every role's /metrics the way Prometheus does: every metric, label and
// label value the dashboard and the alert rules read must be in the scrape, and
// every metric of "Operating MediaMesh" (operatedMetrics) with a sane value.
func TestLiveMetrics(t *testing.T) {
	t.Parallel()
	required := requiredSeries(t)

	// The roles of the compose stack, one instance each.
	var roles []string
	for _, s := range mediameshServices(loadProject(t, nil, nil)) {
		if r := serveRole(s); r != "" && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	sort.Strings(roles)

	bin := buildMediaMesh(t)
	_, dbURL := pgtest.NewDB(t)
	// A password the server ignores (trust authentication), which no log may show.
	dbURL = withPassword(t, dbURL, logSecretPassword)
	var seeds []kfake.Opt
	for _, tp := range kafka.Topics() {
		seeds = append(seeds, kfake.SeedTopics(tp.Partitions, tp.Name))
	}
	brokers := kafkatest.Start(t, 1, seeds...)

	// As compose does: one key, generated once, shared by every role.
	keyDir := t.TempDir()
	runMediaMesh(t, bin, map[string]string{config.KeyDataDir: keyDir}, "token", "--role", "viewer", "--subject", "keygen")
	env := map[string]string{
		config.KeyDatabaseURL:       dbURL,
		config.KeyHTTPAddr:          "127.0.0.1:0",
		config.KeyDataDir:           t.TempDir(),
		config.KeyJWTSigningKeyFile: filepath.Join(keyDir, config.DefaultSigningKeyName),
		config.KeyBus:               string(config.BusKafka),
		config.KeyKafkaBrokers:      strings.Join(brokers, ","),
		config.KeyRedisURL:          liveMetricsRedis(t),
		config.KeyShutdownTimeout:   "5s",
	}
	urls, logs := map[string]string{}, map[string]string{}
	var startErrs []error
	for _, role := range roles {
		u, logPath, err := startRole(t, bin, env, role)
		if err != nil {
			startErrs = append(startErrs, err)
		}
		urls[role], logs[role] = u, logPath
	}
	if len(startErrs) > 0 {
		t.Fatalf("the compose stack's roles must each run and serve HTTP (/health/*, /metrics):\n%v", errors.Join(startErrs...))
	}
	runMediaMesh(t, bin, env, "seed", "--programs", "3")
	editor := strings.TrimSpace(runMediaMesh(t, bin, env, "token", "--role", "editor", "--subject", "metrics-test"))
	// After the traffic below: no role logged the editor's token or the password.
	defer checkLogsHoldNoSecret(t, logs, editor, logSecretPassword)

	client := &http.Client{Timeout: 5 * time.Second}
	query, command := urls["query"], urls["command"]
	programs := waitForPrograms(t, client, query, 3)

	// Each role is ready and checks its own dependencies.
	for _, role := range roles {
		res, err := client.Get(urls[role] + "/health/ready")
		if err != nil {
			t.Errorf("role %s: /health/ready: %v", role, err)
			continue
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if err := unreadyRole(role, res.StatusCode, body); err != nil {
			t.Error(err)
		}
	}

	traffic := func() {
		for _, path := range []string{
			"/v1/programs/" + programs[0], "/v1/programs/" + programs[0], "/v1/programs/" + programs[1],
			"/v1/programs/" + programs[0] + "/episodes", "/v1/programs?limit=5", "/v1/search?q=demo",
			"/v1/categories", "/v1/trending", "/v1/popular", "/v1/programs/not-a-uuid",
		} {
			if res, err := client.Get(query + path); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}
	}
	// A command: its events flow through the relay and Kafka to the projections.
	req, _ := http.NewRequest(http.MethodPost, command+"/v1/programs",
		strings.NewReader(`{"title":"Metrics probe","category":"drama","language":"en"}`))
	req.Header.Set("Authorization", "Bearer "+editor)
	req.Header.Set("Content-Type", "application/json")
	if res, err := client.Do(req); err != nil {
		t.Fatalf("POST /v1/programs: %v", err)
	} else {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("POST /v1/programs = %d %s", res.StatusCode, body)
		}
	}

	// Scrape until every requirement is met (gauges read on scrape, histograms
	// after their first observation), bounded.
	deadline := time.Now().Add(45 * time.Second)
	var missing []string
	var scraped series
	for {
		traffic()
		scraped = series{}
		values := samples{}
		var scrapeErrs []error
		for _, role := range roles {
			text, err := fetch(client, urls[role]+"/metrics")
			if err != nil {
				scrapeErrs = append(scrapeErrs, fmt.Errorf("role %s: %w", role, err))
				continue
			}
			parseExposition(text, scraped)
			parseSamples(text, values)
		}
		missing = missing[:0]
		for _, r := range required {
			if !satisfied(r, scraped) {
				missing = append(missing, r.String())
			}
		}
		// And every metric ops are promised, with a sane value.
		missing = append(missing, unmetOperatedMetrics(values)...)
		if len(missing) == 0 && len(scrapeErrs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for n := range scraped {
				if strings.HasPrefix(n, "mediamesh_") {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			t.Fatalf("after 45 s, the scrape of roles %v lacks what the dashboard, the alerts and ops read:\n  %s\nscrape errors: %v\nmediamesh metrics scraped: %v",
				roles, strings.Join(dedupe(missing), "\n  "), errors.Join(scrapeErrs...), names)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// liveMetricsRedis is database 11 of the machine's Redis, apart from the other
// tests' database 0 (the roles use production key names); its mm:* keys are
// removed when the test ends.
func liveMetricsRedis(t *testing.T) string {
	t.Helper()
	const url = "redis://127.0.0.1:6379/11"
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Fatalf("Redis at 127.0.0.1:6379 is not reachable (%v); start it with: %s", err, redistest.StartHint)
	}
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, "mm:*", 500).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return url
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

func fetch(client *http.Client, url string) (string, error) {
	res, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s = %d: %.200s", url, res.StatusCode, b)
	}
	return string(b), nil
}

// waitForPrograms waits (bounded) until the query role lists n programs and
// returns their ids: the seed has gone through the relay, Kafka and the projector.
func waitForPrograms(t *testing.T, client *http.Client, query string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		res, err := client.Get(query + "/v1/programs?limit=50")
		if err == nil {
			var body struct {
				Items []struct {
					ID string `json:"id"`
				} `json:"items"`
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			last = fmt.Sprintf("%d %.300s", res.StatusCode, b)
			if res.StatusCode == http.StatusOK && json.Unmarshal(b, &body) == nil && len(body.Items) >= n {
				ids := make([]string, len(body.Items))
				for i, it := range body.Items {
					ids[i] = it.ID
				}
				return ids
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the query role did not list %d seeded programs within 60 s (last answer: %s)", n, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildOut  []byte
)

// buildMediaMesh builds ./cmd/mediamesh once per test binary.
func buildMediaMesh(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mediamesh-compose-test-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "mediamesh")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", buildPath, "./cmd/mediamesh")
		cmd.Dir = moduleRoot(t)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/mediamesh: %v\n%s", buildErr, buildOut)
	}
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(buildPath)) })
	return buildPath
}

// environ is vars as a process environment, with nothing of the test's own
// MEDIAMESH_* settings.
func environ(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEDIAMESH_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// runMediaMesh runs a subcommand to completion (bounded) and returns its standard
// output.
func runMediaMesh(t *testing.T, bin string, vars map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = environ(vars)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mediamesh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// startRole starts `mediamesh serve --role role` and returns the base URL it
// reports in its "listening" log record and the file its output goes to; it is
// stopped (SIGTERM) at cleanup.
func startRole(t *testing.T, bin string, vars map[string]string, role string) (string, string, error) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), role+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--role", role)
	cmd.Env = environ(vars)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("role %s did not stop within 15 s of SIGTERM", role)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		for _, line := range bytes.Split(b, []byte("\n")) {
			var rec struct {
				Msg string `json:"msg"`
				URL string `json:"url"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" && rec.URL != "" {
				return rec.URL, logPath, nil
			}
		}
		select {
		case <-done:
			return "", logPath, fmt.Errorf("mediamesh serve --role %s exited during start-up:\n%s", role, tail(b, 3000))
		default:
		}
		if time.Now().After(deadline) {
			return "", logPath, fmt.Errorf("mediamesh serve --role %s reported no listening address within 60 s:\n%s", role, tail(b, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
