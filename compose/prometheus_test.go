package compose_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPrometheusConfig runs promtool on the configuration (with its rule file
// where compose mounts it mapped to the local copy), the rules, and the rules'
// unit tests (prometheus/alerts_test.yml: each alert fires on a breach and stays
// quiet without one).
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	promtool := lookTool(t, "promtool", promtoolInstall)
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// compose mounts alerts.yml at /etc/prometheus/alerts.yml.
	const mounted = "/etc/prometheus/alerts.yml"
	if !strings.Contains(string(cfg), mounted) {
		t.Fatalf("prometheus.yml does not load %s", mounted)
	}
	alerts, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "alerts.yml"), alerts)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), []byte(strings.ReplaceAll(string(cfg), mounted, filepath.Join(dir, "alerts.yml"))))

	out := run(t, dir, promtool, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "1 rule files found") {
		t.Errorf("promtool check config found no rule file:\n%s", out)
	}
	run(t, ".", promtool, "check", "rules", filepath.Join("prometheus", "alerts.yml"))
	run(t, "prometheus", promtool, "test", "rules", "alerts_test.yml")

	// Every alert of the guide exists and is unit-tested.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	tests, err := os.ReadFile(filepath.Join("prometheus", "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var alertNames []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alertNames = append(alertNames, r.Alert)
				if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
					t.Errorf("alert %s has no unit test in alerts_test.yml", r.Alert)
				}
			}
		}
	}
	for _, want := range []string{"MediaMeshHighErrorRate", "MediaMeshHighLatencyP95", "MediaMeshLowCacheHitRate", "MediaMeshProjectionLagGrowing"} {
		if !slices.Contains(alertNames, want) {
			t.Errorf("alerts.yml lacks %s (alerts: %v)", want, alertNames)
		}
	}
}

// dashboard is the part of a Grafana dashboard these checks read.
type dashboard struct {
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	Targets    []struct {
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "dashboards", "mediamesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return d
}

// dashboardExprs returns every query of the dashboard with Grafana's interval
// variables replaced by a literal, as Prometheus receives them.
func dashboardExprs(d dashboard) []string {
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			e := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h").Replace(tg.Expr)
			exprs = append(exprs, e)
		}
	}
	return exprs
}

// TestGrafanaDashboard checks the provisioned dashboard: it shows what the sizing
// guide asks for, every query uses the provisioned data source, and every query is
// valid PromQL (promtool checks them as recording rules).
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	promtool := lookTool(t, "promtool", promtoolInstall)
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join("grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("provisioned data sources %+v, want the stack's Prometheus", ds.Datasources)
	}
	uid := ds.Datasources[0].UID

	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join("grafana", "provisioning", "dashboards", "mediamesh.yml"), &providers)
	if len(providers.Providers) != 1 || providers.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Fatalf("dashboard provider %+v, want the path compose mounts grafana/dashboards at", providers.Providers)
	}

	d := readDashboard(t)
	var titles []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		titles = append(titles, strings.ToLower(p.Title))
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if p.Datasource.UID != uid || tg.Datasource.UID != uid {
				t.Errorf("panel %q: data source %q/%q, want the provisioned %q", p.Title, p.Datasource.UID, tg.Datasource.UID, uid)
			}
		}
	}
	for _, want := range []string{"requests/s", "p95 / p99", "error rate", "cache hit rate per layer", "projection lag", "freshness per sink", "consumer lag"} {
		if !slices.ContainsFunc(titles, func(title string) bool { return strings.Contains(title, want) }) {
			t.Errorf("no panel about %q (panels: %q)", want, titles)
		}
	}

	// The recording rules the dashboard reads are defined in alerts.yml.
	recorded := recordingRules(t)
	for _, e := range dashboardExprs(d) {
		for _, name := range recordingRef.FindAllString(e, -1) {
			if !recorded[name] {
				t.Errorf("the dashboard reads %s, which alerts.yml does not record", name)
			}
		}
	}

	// promtool has no expression checker; a rule file with one recording rule per
	// query makes it parse each of them.
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range dashboardExprs(d) {
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, strings.TrimSpace(quoteYAML(e)))
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	writeFile(t, path, []byte(b.String()))
	run(t, ".", promtool, "check", "rules", path)
}

// recordingRef matches a recording rule's name (level:metric:operations).
var recordingRef = regexp.MustCompile(`\bmediamesh:[a-zA-Z0-9_:]+`)

// recordingRules returns the names alerts.yml records.
func recordingRules(t *testing.T) map[string]bool {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	out := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

// quoteYAML quotes s as a YAML scalar.
func quoteYAML(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a valid YAML double-quoted scalar
	return string(b)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
