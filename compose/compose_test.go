package compose_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/mediamesh/mediamesh/infra/config"
)

// mediameshImage is the image every MediaMesh service runs (MEDIAMESH_IMAGE's
// default in compose.yaml).
const mediameshImage = "mediamesh:dev"

// profileCase is one way to start the stack, as the compose file's header and the
// README give it.
type profileCase struct {
	name     string
	profiles []string
	envFiles []string
	check    func(t *testing.T, p *types.Project, cfg config.Config)
}

func profileCases() []profileCase {
	return []profileCase{
		{"default", nil, nil, func(t *testing.T, p *types.Project, cfg config.Config) {
			wantAdapters(t, cfg, config.EventStorePostgres, config.SearchPostgres)
			if cfg.Redis.URL == "" || len(cfg.KafkaBrokers) != 1 {
				t.Errorf("default profile: want one Redis URL and one Kafka broker, got %+v and %v", cfg.Redis, cfg.KafkaBrokers)
			}
			for _, absent := range []string{"kurrentdb", "meilisearch", "redis-node-1", "redis-cluster-init", "kafka-2", "kafka-3"} {
				if _, ok := p.Services[absent]; ok {
					t.Errorf("default profile runs %s", absent)
				}
			}
		}},
		{"full", []string{"full"}, []string{"full.env"}, func(t *testing.T, p *types.Project, cfg config.Config) {
			wantAdapters(t, cfg, config.EventStoreESDB, config.SearchMeilisearch)
		}},
		{"cluster", []string{"cluster"}, []string{"cluster.env"}, func(t *testing.T, p *types.Project, cfg config.Config) {
			wantAdapters(t, cfg, config.EventStorePostgres, config.SearchPostgres)
			wantCluster(t, p, cfg)
		}},
		{"full and cluster", []string{"full", "cluster"}, []string{"full.env", "cluster.env"}, func(t *testing.T, p *types.Project, cfg config.Config) {
			wantAdapters(t, cfg, config.EventStoreESDB, config.SearchMeilisearch)
			wantCluster(t, p, cfg)
		}},
	}
}

func wantAdapters(t *testing.T, cfg config.Config, store config.EventStoreKind, search config.SearchKind) {
	t.Helper()
	if cfg.EventStore != store || cfg.Search != search || cfg.Bus != config.BusKafka || cfg.Blob != config.BlobS3 {
		t.Errorf("adapters: event store %s, search %s, bus %s, blob %s; want %s, %s, kafka, s3", cfg.EventStore, cfg.Search, cfg.Bus, cfg.Blob, store, search)
	}
}

// wantCluster checks the cluster profile: six Redis nodes as cluster seeds, three
// Kafka brokers that form one KRaft quorum and replicate three times.
func wantCluster(t *testing.T, p *types.Project, cfg config.Config) {
	t.Helper()
	if len(cfg.Redis.Addrs) != 6 {
		t.Errorf("MEDIAMESH_REDIS_URL: %d cluster nodes, want 6 (%+v)", len(cfg.Redis.Addrs), cfg.Redis)
	}
	if len(cfg.KafkaBrokers) != 3 {
		t.Errorf("MEDIAMESH_KAFKA_BROKERS: %v, want 3 brokers", cfg.KafkaBrokers)
	}
	for _, name := range []string{"kafka", "kafka-2", "kafka-3"} {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("cluster profile lacks %s", name)
			continue
		}
		if v := envValue(s, "KAFKA_CONTROLLER_QUORUM_VOTERS"); strings.Count(v, "@") != 3 {
			t.Errorf("%s: quorum voters %q, want three", name, v)
		}
		if v := envValue(s, "KAFKA_DEFAULT_REPLICATION_FACTOR"); v != "3" {
			t.Errorf("%s: default replication factor %q, want 3", name, v)
		}
	}
	if v := envValue(p.Services["kafka-init"], "REPLICATION_FACTOR"); v != "3" {
		t.Errorf("kafka-init creates topics with replication factor %q, want 3", v)
	}
}

// loadProject loads compose.yaml as `docker compose --profile … --env-file …`
// would, without the caller's environment (so a developer's shell cannot change
// what is checked).
func loadProject(t *testing.T, profiles, envFiles []string) *types.Project {
	t.Helper()
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory("."),
		cli.WithProfiles(profiles),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	}
	if len(envFiles) > 0 {
		opts = append(opts, cli.WithEnvFiles(envFiles...), cli.WithDotEnv)
	}
	po, err := cli.NewProjectOptions([]string{"compose.yaml"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := po.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load compose.yaml with profiles %v and env files %v: %v", profiles, envFiles, err)
	}
	return p
}

func envValue(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

// mediameshServices returns the services that run the MediaMesh image.
func mediameshServices(p *types.Project) map[string]types.ServiceConfig {
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if s.Image == mediameshImage {
			out[name] = s
		}
	}
	return out
}

// serveRole is the --role of a `serve` service, "" for a job.
func serveRole(s types.ServiceConfig) string {
	if len(s.Command) == 3 && s.Command[0] == "serve" && s.Command[1] == "--role" {
		return s.Command[2]
	}
	return ""
}

func TestComposeProfiles(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	for _, k := range config.Keys() {
		known[k.Name] = true
	}
	for _, pc := range profileCases() {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			p := loadProject(t, pc.profiles, pc.envFiles)
			mm := mediameshServices(p)

			// The topology of the sizing guide.
			roles := map[string]int{}
			for _, s := range mm {
				if r := serveRole(s); r != "" {
					roles[r]++
				}
			}
			want := map[string]int{"command": 1, "query": 3, "relay": 1, "projector": 2, "ingest": 1}
			for r, n := range want {
				if roles[r] != n {
					t.Errorf("role %s runs %d times, want %d (roles: %v)", r, roles[r], n, roles)
				}
			}
			for _, job := range []string{"keygen", "migrate", "seed"} {
				if _, ok := mm[job]; !ok {
					t.Errorf("no %s job", job)
				}
			}

			var commandCfg config.Config
			for _, name := range sortedKeys(mm) {
				s := mm[name]
				env := map[string]string{}
				for k, v := range s.Environment {
					if !known[k] {
						t.Errorf("%s: environment key %s is not a MediaMesh configuration key (mediamesh serve --help lists them)", name, k)
					}
					if v != nil {
						env[k] = *v
					}
				}
				cfg, err := config.Load(func(k string) string { return env[k] })
				if err != nil {
					t.Errorf("%s: its environment is not a valid configuration: %v", name, err)
					continue
				}
				if serveRole(s) == "" {
					continue
				}
				checkAddresses(t, p, name, cfg)
				checkMediaMeshHealth(t, name, s, cfg)
				checkSigningKey(t, p, name, s, cfg)
				if serveRole(s) == "query" && len(cfg.DatabaseReadURLs) == 0 {
					t.Errorf("%s: no MEDIAMESH_DATABASE_READ_URLS: the query roles read the replica", name)
				}
				if name == "command" {
					commandCfg = cfg
				}
			}
			checkDependencies(t, p)
			checkHealthchecks(t, p)
			pc.check(t, p, commandCfg)
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkAddresses: every server a MediaMesh service's configuration names (for the
// adapters it selected) is a service of the project.
func checkAddresses(t *testing.T, p *types.Project, name string, cfg config.Config) {
	t.Helper()
	type addr struct{ key, hostport string }
	var addrs []addr
	urlHost := func(key, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Errorf("%s: %s: %v", name, key, err)
			return
		}
		addrs = append(addrs, addr{key, u.Host})
	}
	urlHost(config.KeyDatabaseURL, cfg.DatabaseURL)
	for _, u := range cfg.DatabaseReadURLs {
		urlHost(config.KeyDatabaseReadURLs, u)
	}
	switch {
	case cfg.Redis.Disabled:
	case cfg.Redis.URL != "":
		urlHost(config.KeyRedisURL, cfg.Redis.URL)
	default:
		for _, a := range cfg.Redis.Addrs {
			addrs = append(addrs, addr{config.KeyRedisURL, a})
		}
	}
	if cfg.Bus == config.BusKafka {
		for _, b := range cfg.KafkaBrokers {
			addrs = append(addrs, addr{config.KeyKafkaBrokers, b})
		}
	}
	if cfg.EventStore == config.EventStoreESDB {
		urlHost(config.KeyESDBURL, cfg.ESDBURL)
	}
	if cfg.Search == config.SearchMeilisearch {
		urlHost(config.KeyMeiliURL, cfg.MeiliURL)
	}
	if cfg.Blob == config.BlobS3 {
		urlHost(config.KeyS3Endpoint, cfg.S3.Endpoint)
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a.hostport)
		if err != nil {
			host = a.hostport
		}
		if _, ok := p.Services[host]; !ok {
			t.Errorf("%s: %s names %q, which is not a service of this profile", name, a.key, a.hostport)
		}
	}
}

// probeBinary is where the Dockerfile installs the health-check client.
func probeBinary(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^COPY --from=probe /bin/busybox (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Dockerfile: no `COPY --from=probe /bin/busybox PATH` line")
	}
	return string(m[1])
}

// checkMediaMeshHealth: the role's health check probes /health/ready on the port it
// listens on, with the client the image has.
func checkMediaMeshHealth(t *testing.T, name string, s types.ServiceConfig, cfg config.Config) {
	t.Helper()
	hc := s.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 {
		t.Errorf("%s: no health check", name)
		return
	}
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	wantURL := "http://127.0.0.1:" + port + "/health/ready"
	if hc.Test[0] != "CMD" || hc.Test[1] != probeBinary(t) || !slices.Contains(hc.Test, wantURL) {
		t.Errorf("%s: health check %q, want [CMD %s … %s]", name, hc.Test, probeBinary(t), wantURL)
	}
}

// checkSigningKey: every instance reads the one key file, from the volume the
// keygen job generates it into.
func checkSigningKey(t *testing.T, p *types.Project, name string, s types.ServiceConfig, cfg config.Config) {
	t.Helper()
	if cfg.JWTGenerateKey {
		t.Errorf("%s: no MEDIAMESH_JWT_SIGNING_KEY_FILE: each instance would generate its own key", name)
		return
	}
	keyDir := filepath.Dir(cfg.JWTSigningKeyFile)
	volume := ""
	for _, v := range s.Volumes {
		if v.Target == keyDir {
			volume = v.Source
		}
	}
	if volume == "" {
		t.Errorf("%s: nothing is mounted at %s, the signing key's directory", name, keyDir)
		return
	}
	keygen := p.Services["keygen"]
	genDir := envValue(keygen, config.KeyDataDir)
	if filepath.Join(genDir, config.DefaultSigningKeyName) != cfg.JWTSigningKeyFile {
		t.Errorf("keygen generates %s, %s reads %s", filepath.Join(genDir, config.DefaultSigningKeyName), name, cfg.JWTSigningKeyFile)
	}
	for _, v := range keygen.Volumes {
		if v.Target == genDir && v.Source == volume && !v.ReadOnly {
			return
		}
	}
	t.Errorf("keygen does not write volume %s at %s", volume, genDir)
}

// checkDependencies: a required dependency is a service of the profile; an
// optional one (required: false) is a service of some profile; a healthy-condition
// target has a health check and a completed-condition target is a one-shot job.
func checkDependencies(t *testing.T, p *types.Project) {
	t.Helper()
	for _, name := range sortedKeys(p.Services) {
		for dep, d := range p.Services[name].DependsOn {
			target, active := p.Services[dep]
			if !active {
				disabled, exists := p.DisabledServices[dep]
				switch {
				case !exists:
					t.Errorf("%s depends on %s, which no profile defines", name, dep)
				case d.Required:
					t.Errorf("%s requires %s, which runs only in profiles %v", name, dep, disabled.Profiles)
				}
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
					t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart != "no" {
					t.Errorf("%s waits for %s to complete, but %s restarts (%q)", name, dep, dep, target.Restart)
				}
			case types.ServiceConditionStarted:
			default:
				t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
			}
		}
	}
}

// checkHealthchecks: every health check is a command compose can run.
func checkHealthchecks(t *testing.T, p *types.Project) {
	t.Helper()
	for _, name := range sortedKeys(p.Services) {
		hc := p.Services[name].HealthCheck
		if hc == nil || hc.Disable {
			continue
		}
		if len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL") || strings.TrimSpace(hc.Test[1]) == "" {
			t.Errorf("%s: health check %q is not [CMD …] or [CMD-SHELL …]", name, hc.Test)
		}
		if hc.Interval == nil || hc.Retries == nil {
			t.Errorf("%s: health check without interval or retries", name)
		}
	}
}

// TestEntryPointsReachEveryRole checks that nginx's upstreams and Prometheus's
// targets are the stack's services: reads to the query roles, everything else to
// the command role, and every serving role scraped with its role label.
func TestEntryPointsReachEveryRole(t *testing.T) {
	t.Parallel()
	p := loadProject(t, nil, nil)
	byRole := map[string][]string{}
	for name, s := range mediameshServices(p) {
		if r := serveRole(s); r != "" {
			byRole[r] = append(byRole[r], name+":8080")
		}
	}
	for _, v := range byRole {
		sort.Strings(v)
	}

	tmpl, err := os.ReadFile(filepath.Join("nginx", "templates", "mediamesh.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	upstreams := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?s)upstream (\w+) \{(.*?)\}`).FindAllStringSubmatch(string(tmpl), -1) {
		for _, s := range regexp.MustCompile(`(?m)^\s*server (\S+?)[ ;]`).FindAllStringSubmatch(m[2], -1) {
			upstreams[m[1]] = append(upstreams[m[1]], s[1])
		}
		sort.Strings(upstreams[m[1]])
	}
	if !slices.Equal(upstreams["mediamesh_query"], byRole["query"]) || !slices.Equal(upstreams["mediamesh_command"], byRole["command"]) {
		t.Errorf("nginx upstreams %v, want query %v and command %v", upstreams, byRole["query"], byRole["command"])
	}

	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join("prometheus", "prometheus.yml"), &prom)
	scraped := map[string][]string{}
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName != "mediamesh" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			scraped[st.Labels["role"]] = append(scraped[st.Labels["role"]], st.Targets...)
		}
	}
	for r := range scraped {
		sort.Strings(scraped[r])
	}
	for r, targets := range byRole {
		if !slices.Equal(scraped[r], targets) {
			t.Errorf("Prometheus scrapes role %s at %v, want %v", r, scraped[r], targets)
		}
	}
	if len(scraped) != len(byRole) {
		t.Errorf("Prometheus scrapes roles %v, the stack runs %v", sortedKeys(scraped), sortedKeys(byRole))
	}
}
