package compose_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nginxSetup is the nginx service of the default profile as compose runs it: its
// environment (what the image's envsubst fills into the template) and where the
// rendered template is included from.
type nginxSetup struct {
	env      map[string]string
	services map[string]bool
}

func loadNginxSetup(t *testing.T) nginxSetup {
	t.Helper()
	p := loadProject(t, nil, nil)
	s, ok := p.Services["nginx"]
	if !ok {
		t.Fatal("no nginx service")
	}
	mounts := map[string]string{}
	for _, v := range s.Volumes {
		rel, err := filepath.Rel(mustAbs(t, "."), v.Source)
		if err != nil {
			t.Fatal(err)
		}
		mounts[v.Target] = rel
	}
	if mounts["/etc/nginx/nginx.conf"] != filepath.Join("nginx", "nginx.conf") || mounts["/etc/nginx/templates"] != filepath.Join("nginx", "templates") {
		t.Fatalf("nginx mounts %v, want nginx/nginx.conf and nginx/templates", mounts)
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	services := map[string]bool{}
	for name := range p.Services {
		services[name] = true
	}
	return nginxSetup{env: env, services: services}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var (
	envsubstVar   = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`)
	upstreamHost  = regexp.MustCompile(`(?m)^(\s*server\s+)([a-z0-9-]+):(\d+)`)
	includeDir    = regexp.MustCompile(`include\s+(/etc/nginx/mediamesh)/\*\.conf;`)
	listenDefault = regexp.MustCompile(`(?m)^(\s*)listen 8080 `)
)

// renderNginx writes a runnable copy of the nginx configuration under a temporary
// prefix: the template rendered with env as the nginx image does (only defined
// variables are replaced), upstream hosts replaced through upstream (a compose
// service name to host:port), the include and temporary paths under the prefix,
// and, when listen is set, the server's listen address. It returns the prefix.
func renderNginx(t *testing.T, setup nginxSetup, env map[string]string, upstream func(service, port string) string, listen string) string {
	t.Helper()
	prefix := t.TempDir()
	main, err := os.ReadFile(filepath.Join("nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	m := includeDir.FindSubmatch(main)
	if m == nil || setup.env["NGINX_ENVSUBST_OUTPUT_DIR"] != string(m[1]) {
		t.Fatalf("nginx.conf includes %q, but the template is rendered into NGINX_ENVSUBST_OUTPUT_DIR=%q", m, setup.env["NGINX_ENVSUBST_OUTPUT_DIR"])
	}
	conf := strings.Replace(string(main), string(m[0]), "include "+filepath.Join(prefix, "mediamesh", "*.conf")+";", 1)
	// Temporary files under the prefix, so the check needs no system directory.
	var temps strings.Builder
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "\t%s_temp_path %s;\n", kind, filepath.Join(prefix, "tmp", kind))
	}
	conf = strings.Replace(conf, "http {\n", "http {\n"+temps.String(), 1)
	writeFile(t, filepath.Join(prefix, "nginx.conf"), []byte(conf))

	tmpl, err := os.ReadFile(filepath.Join("nginx", "templates", "mediamesh.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := envsubstVar.ReplaceAllStringFunc(string(tmpl), func(v string) string {
		name := envsubstVar.FindStringSubmatch(v)[1]
		if val, ok := env[name]; ok {
			return val
		}
		t.Errorf("the template uses ${%s}, which the nginx service does not define", name)
		return v
	})
	rendered = upstreamHost.ReplaceAllStringFunc(rendered, func(s string) string {
		g := upstreamHost.FindStringSubmatch(s)
		if !setup.services[g[2]] {
			t.Errorf("nginx upstream server %s:%s is not a compose service", g[2], g[3])
			return s
		}
		return g[1] + upstream(g[2], g[3])
	})
	if listen != "" {
		if !listenDefault.MatchString(rendered) {
			t.Fatal("template: no `listen 8080 ` line to move")
		}
		rendered = listenDefault.ReplaceAllString(rendered, "${1}listen "+listen+" ")
		// The test runs nginx as one process (master_process off), which accepts
		// on one socket only: reuseport would open one per configured worker.
		rendered = strings.Replace(rendered, " reuseport", "", 1)
	}
	for _, d := range []string{"mediamesh", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(prefix, "mediamesh", "mediamesh.conf"), []byte(rendered))
	return prefix
}

// TestNginxConfig runs `nginx -t` on the configuration as the nginx service renders
// it, with the upstream hosts mapped to 127.0.0.1.
func TestNginxConfig(t *testing.T) {
	t.Parallel()
	nginx := lookTool(t, "nginx", nginxInstall)
	setup := loadNginxSetup(t)
	prefix := renderNginx(t, setup, setup.env, func(_, port string) string { return "127.0.0.1:" + port }, "")
	// -T is -t that also prints the configuration it loaded: the check fails if
	// the rendered template was not included (an include glob matching nothing is
	// valid nginx).
	out := run(t, prefix, nginx, "-T", "-p", prefix+"/", "-c", filepath.Join(prefix, "nginx.conf"), "-e", "stderr",
		"-g", "pid "+filepath.Join(prefix, "nginx.pid")+";")
	if !strings.Contains(out, "test is successful") || !strings.Contains(out, "upstream mediamesh_query {") {
		t.Fatalf("nginx -T:\n%s", out)
	}
}

// TestNginxRouting runs the configuration for real against stub backends (one per
// compose service) and checks where each kind of request goes: reads to the query
// pool, spread over its three instances; commands, auth, editorial and ops to the
// command role; plus the answers nginx gives itself, gzip, and the per-IP limit.
func TestNginxRouting(t *testing.T) {
	t.Parallel()
	nginx := lookTool(t, "nginx", nginxInstall)
	setup := loadNginxSetup(t)

	backends := map[string]string{} // service → 127.0.0.1:port of its stub
	for _, svc := range []string{"command", "query-1", "query-2", "query-3"} {
		ln := listenLow(t)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", svc)
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/v1/search" {
				// A body large enough for gzip (min length 1024).
				fmt.Fprintf(w, `{"items":[],"padding":%q}`, strings.Repeat("mediamesh ", 300))
				return
			}
			fmt.Fprintf(w, `{"backend":%q,"host":%q,"xff":%q}`, svc, r.Host, r.Header.Get("X-Forwarded-For"))
		})}
		go srv.Serve(ln) //nolint:errcheck // ends with Close
		t.Cleanup(func() { _ = srv.Close() })
		backends[svc] = ln.Addr().String()
	}
	front := listenLow(t)
	addr := front.Addr().String()
	_ = front.Close() // nginx binds it next

	env := map[string]string{}
	for k, v := range setup.env {
		env[k] = v
	}
	// A small limit, so the test can hit it: 20 requests/s with a burst of 20.
	env["LIMIT_REQ_RATE"], env["LIMIT_REQ_BURST"] = "20r/s", "20"
	prefix := renderNginx(t, setup, env, func(svc, _ string) string { return backends[svc] }, addr)

	logs := &syncBuffer{}
	cmd := exec.Command(nginx, "-p", prefix+"/", "-c", filepath.Join(prefix, "nginx.conf"), "-e", "stderr",
		"-g", "daemon off; master_process off; pid "+filepath.Join(prefix, "nginx.pid")+";")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	waitHTTP(t, client, base+"/health/live", logs)

	type want struct {
		status  int
		backend string // "" when nginx answers itself; "query" is any query instance
	}
	tests := []struct {
		method, path string
		want         want
	}{
		{"GET", "/", want{200, ""}},
		{"GET", "/health/live", want{200, ""}},
		{"GET", "/health/ready", want{200, "query"}},
		{"GET", "/metrics", want{404, ""}},
		{"GET", "/v1/programs", want{200, "query"}},
		{"GET", "/v1/programs/0190a0a0-0000-7000-8000-000000000001", want{200, "query"}},
		{"HEAD", "/v1/programs/0190a0a0-0000-7000-8000-000000000001/episodes", want{200, "query"}},
		{"GET", "/v1/episodes/0190a0a0-0000-7000-8000-000000000002", want{200, "query"}},
		{"GET", "/v1/search?q=demo", want{200, "query"}},
		{"GET", "/v1/trending", want{200, "query"}},
		{"GET", "/v1/popular", want{200, "query"}},
		{"GET", "/v1/categories", want{200, "query"}},
		{"POST", "/v1/plays", want{200, "query"}},
		{"GET", "/media/ab/cd/poster-small.webp", want{200, "query"}},
		{"POST", "/v1/programs", want{200, "command"}},
		{"PATCH", "/v1/programs/0190a0a0-0000-7000-8000-000000000001", want{200, "command"}},
		{"POST", "/v1/programs/0190a0a0-0000-7000-8000-000000000001/publish", want{200, "command"}},
		{"POST", "/v1/programs/0190a0a0-0000-7000-8000-000000000001/episodes", want{200, "command"}},
		{"PATCH", "/v1/episodes/0190a0a0-0000-7000-8000-000000000002", want{200, "command"}},
		{"POST", "/v1/ingest", want{200, "command"}},
		{"GET", "/v1/ingest/0190a0a0-0000-7000-8000-000000000003", want{200, "command"}},
		{"POST", "/v1/assets", want{200, "command"}},
		{"GET", "/v1/cms/programs", want{200, "command"}},
		{"GET", "/v1/admin/projections", want{200, "command"}},
		{"POST", "/v1/auth/login", want{200, "command"}},
		{"GET", "/v1/auth/me", want{200, "command"}},
		{"GET", "/.well-known/jwks.json", want{200, "command"}},
		{"GET", "/openapi.json", want{200, "command"}},
	}
	// Sequential and paced under the limit (20/s): the routing table, not the limit.
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(""))
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		got := res.Header.Get("X-Backend")
		ok := res.StatusCode == tt.want.status && (got == tt.want.backend || (tt.want.backend == "query" && strings.HasPrefix(got, "query-")))
		if !ok {
			t.Errorf("%s %s = %d from %q, want %d from %q", tt.method, tt.path, res.StatusCode, got, tt.want.status, tt.want.backend)
		}
		time.Sleep(60 * time.Millisecond) // pacing under the test's 20 requests/s limit
	}

	t.Run("reads spread over the three query instances", func(t *testing.T) {
		seen := map[string]bool{}
		for range 9 {
			res := get(t, client, base+"/v1/categories", nil)
			seen[res.Header.Get("X-Backend")] = true
			time.Sleep(60 * time.Millisecond)
		}
		if len(seen) != 3 {
			t.Errorf("reads went to %v, want all three query instances", seen)
		}
	})

	t.Run("proxied requests keep the client's host and address", func(t *testing.T) {
		res := get(t, client, base+"/v1/programs", nil)
		body, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(body), `"host":"`+addr+`"`) || !strings.Contains(string(body), `"xff":"127.0.0.1"`) {
			t.Errorf("backend saw %s; want the client's Host %s and X-Forwarded-For 127.0.0.1", body, addr)
		}
		time.Sleep(60 * time.Millisecond)
	})

	t.Run("large JSON is gzipped", func(t *testing.T) {
		res := get(t, client, base+"/v1/search?q=demo", map[string]string{"Accept-Encoding": "gzip"})
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q, want gzip", res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(zr); err != nil || !strings.Contains(string(b), `"items"`) {
			t.Fatalf("gunzipped body %q, %v", b, err)
		}
		time.Sleep(60 * time.Millisecond)
	})

	t.Run("a client above the limit gets 429", func(t *testing.T) {
		// 60 requests at once: far above 20/s with a burst of 20, however slow
		// the machine.
		var wg sync.WaitGroup
		statuses := make(chan int, 60)
		for range 60 {
			wg.Go(func() {
				res, err := client.Get(base + "/v1/categories")
				if err != nil {
					statuses <- 0
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				statuses <- res.StatusCode
			})
		}
		wg.Wait()
		close(statuses)
		counts := map[int]int{}
		for s := range statuses {
			counts[s]++
		}
		if counts[http.StatusTooManyRequests] == 0 || counts[http.StatusOK] == 0 {
			t.Fatalf("statuses %v; want some 200 and some 429 (limit 20/s, burst 20)", counts)
		}
	})
}

func get(t *testing.T, client *http.Client, url string, headers map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res
}

// waitHTTP waits (bounded) until url answers 200.
func waitHTTP(t *testing.T, client *http.Client, url string, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not answer 200 within 15 s; log:\n%s", url, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listenLow listens on a free port of 127.0.0.1 below the ephemeral range (32768+).
func listenLow(t *testing.T) net.Listener {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(10000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			return ln
		}
	}
	t.Fatal("no free port in [20000, 30000)")
	return nil
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
