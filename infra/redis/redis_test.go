package redis_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/infra/config"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	"github.com/mediamesh/mediamesh/projections/documents"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value   string
		cluster bool
		db      int
		dial    time.Duration // 0: one second (the fail-fast default)
		err     error         // nil: any client; ErrDisabled; errAny: some error
	}{
		{value: "redis://127.0.0.1:6379/0"},
		{value: "redis://127.0.0.1:6379/0?dial_timeout=3s", dial: 3 * time.Second},
		{value: "redis://user:secret@127.0.0.1:6379/3", db: 3},
		{value: "127.0.0.1:7000,127.0.0.1:7001", cluster: true},
		{value: "redis-cluster.internal:6379", cluster: true},
		{value: "off", err: mmredis.ErrDisabled},
		{value: "OFF", err: mmredis.ErrDisabled},
		{value: "", err: errAny},
		{value: "redis://a:1,redis://b:2", err: errAny},
		{value: "http://127.0.0.1:6379", err: errAny},
		{value: "no-port", err: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			c, err := mmredis.New(tc.value)
			switch {
			case tc.err == errAny:
				if err == nil {
					t.Fatalf("New(%q) = %T, want an error", tc.value, c)
				}
				return
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("New(%q) error %v, want %v", tc.value, err, tc.err)
				}
				return
			case err != nil:
				t.Fatalf("New(%q): %v", tc.value, err)
			}
			defer c.Close()
			wantDial := tc.dial
			if wantDial == 0 {
				wantDial = time.Second
			}
			switch cc := c.(type) {
			case *goredis.ClusterClient:
				if !tc.cluster {
					t.Fatalf("New(%q) is a cluster client", tc.value)
				}
				if o := cc.Options(); o.DialTimeout != wantDial || o.ReadTimeout != time.Second {
					t.Fatalf("New(%q) dial %v read %v, want %v and 1s", tc.value, o.DialTimeout, o.ReadTimeout, wantDial)
				}
			case *goredis.Client:
				if o := cc.Options(); o.DialTimeout != wantDial || o.ReadTimeout != time.Second || o.PoolTimeout != time.Second {
					t.Fatalf("New(%q) dial %v read %v pool %v, want %v, 1s and 1s", tc.value, o.DialTimeout, o.ReadTimeout, o.PoolTimeout, wantDial)
				}
				if tc.cluster {
					t.Fatalf("New(%q) is a single-node client", tc.value)
				}
				if cc.Options().DB != tc.db {
					t.Fatalf("New(%q) DB %d, want %d", tc.value, cc.Options().DB, tc.db)
				}
			default:
				t.Fatalf("New(%q) = %T", tc.value, c)
			}
		})
	}
	if _, err := mmredis.FromConfig(config.Redis{Disabled: true}); !errors.Is(err, mmredis.ErrDisabled) {
		t.Errorf("FromConfig(off) = %v", err)
	}
}

var errAny = errors.New("any error")

// TestKeyspace pins the key names: they are a contract with the query API.
func TestKeyspace(t *testing.T) {
	t.Parallel()
	ks := mmredis.CatalogKeyspace(1)
	const id = "0190d5a0-0000-7000-8000-000000000001"
	got := []string{ks.Program(id), ks.ProgramEpisodes(id), ks.Episode(id), ks.GenBrowse(), ks.GenSearch(), ks.Position(), ks.Invalidate(),
		mmredis.Guard(ks.Program(id)), mmredis.CatalogKeyspace(2).Program(id), ks.WithNamespace("t1:").Program(id)}
	want := []string{
		"mm:catalog:v1:program:" + id,
		"mm:catalog:v1:program:" + id + ":episodes",
		"mm:catalog:v1:episode:" + id,
		"mm:catalog:v1:gen:browse",
		"mm:catalog:v1:gen:search",
		"mm:catalog:v1:position",
		"mm:catalog:v1:invalidate",
		"{mm:catalog:v1:program:" + id + "}:guard",
		"mm:catalog:v2:program:" + id,
		"t1:mm:catalog:v1:program:" + id,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys\n got %q\nwant %q", got, want)
	}
}

func newDocuments(t *testing.T, c goredis.UniversalClient) *mmredis.Documents {
	t.Helper()
	d, err := mmredis.NewDocuments(c, redistest.Keyspace(t, c), 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGuardedWrites: a write lands only with a guard above the stored one, so a
// delayed older write can neither replace a newer document nor bring a deleted one
// back; "changed" reports real changes only.
func TestGuardedWrites(t *testing.T) {
	t.Parallel()
	c := redistest.Client(t)
	d := newDocuments(t, c)
	ctx := context.Background()
	const id = "0190d5a0-0000-7000-8000-0000000000aa"
	key := d.Keys().Program(id)
	steps := []struct {
		name    string
		guard   int64
		value   string // "" deletes
		changed bool
		stored  string // "" absent
	}{
		{"first write", 5, `{"v":5}`, true, `{"v":5}`},
		{"same guard again", 5, `{"v":"other"}`, false, `{"v":5}`},
		{"older guard", 3, `{"v":3}`, false, `{"v":5}`},
		{"newer guard, same value", 6, `{"v":5}`, false, `{"v":5}`},
		{"newer guard", 7, `{"v":7}`, true, `{"v":7}`},
		{"delete", 8, "", true, ""},
		{"delayed older write after the delete", 7, `{"v":7}`, false, ""},
		{"delete again", 9, "", false, ""},
		{"republished", 10, `{"v":10}`, true, `{"v":10}`},
	}
	for _, s := range steps {
		var v []byte
		if s.value != "" {
			v = []byte(s.value)
		}
		changed, err := d.Write(ctx, []documents.Write{{Kind: documents.KindProgram, ID: id, Guard: s.guard, Value: v}})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if changed[0] != s.changed {
			t.Errorf("%s: changed = %v, want %v", s.name, changed[0], s.changed)
		}
		got, err := c.Get(ctx, key).Result()
		if errors.Is(err, goredis.Nil) {
			got = ""
		} else if err != nil {
			t.Fatal(err)
		}
		if got != s.stored {
			t.Errorf("%s: stored %q, want %q", s.name, got, s.stored)
		}
	}
	ttl, err := c.TTL(ctx, mmredis.Guard(key)).Result()
	if err != nil || ttl <= 0 || ttl > mmredis.DefaultGuardTTL {
		t.Errorf("guard TTL %v (%v), want within (0, %v]", ttl, err, mmredis.DefaultGuardTTL)
	}
	if ttl, _ := c.TTL(ctx, key).Result(); ttl != -1 {
		t.Errorf("document TTL %v, want none", ttl)
	}
}

// TestWriteKinds: each kind lands on its key; the script is reloaded after the
// server forgot it.
func TestWriteKinds(t *testing.T) {
	t.Parallel()
	c := redistest.Client(t)
	d := newDocuments(t, c)
	ctx := context.Background()
	ws := []documents.Write{
		{Kind: documents.KindProgram, ID: "p1", Guard: 1, Value: []byte(`"program"`)},
		{Kind: documents.KindEpisodes, ID: "p1", Guard: 1, Value: []byte(`"list"`)},
		{Kind: documents.KindEpisode, ID: "e1", Guard: 1, Value: []byte(`"episode"`)},
	}
	if _, err := d.Write(ctx, ws); err != nil {
		t.Fatal(err)
	}
	ks := d.Keys()
	for k, want := range map[string]string{ks.Program("p1"): `"program"`, ks.ProgramEpisodes("p1"): `"list"`, ks.Episode("e1"): `"episode"`} {
		if got, err := c.Get(ctx, k).Result(); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", k, got, err, want)
		}
	}
	// A flushed script cache (a restarted or new server) is not an error.
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ws[0].Guard, ws[0].Value = 2, []byte(`"program 2"`)
	if changed, err := d.Write(ctx, ws[:1]); err != nil || !changed[0] {
		t.Fatalf("write after SCRIPT FLUSH: %v %v", changed, err)
	}
	if _, err := d.Write(ctx, []documents.Write{{Kind: documents.Kind(9), ID: "x"}}); err == nil {
		t.Error("unknown kind accepted")
	}
}

// TestAnnounce: counters, the position (conditional unless initial) and the
// message on the channel.
func TestAnnounce(t *testing.T) {
	t.Parallel()
	c := redistest.Client(t)
	d := newDocuments(t, c)
	ctx := context.Background()
	ks := d.Keys()
	sub := c.Subscribe(ctx, ks.Invalidate())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	if _, ok, err := d.Position(ctx); ok || err != nil {
		t.Fatalf("position before any announce: ok=%v err=%v", ok, err)
	}
	if ok, err := d.Announce(ctx, documents.Notice{Position: 5}, false); ok || err != nil {
		t.Fatalf("conditional announce without a position: ok=%v err=%v, want false", ok, err)
	}
	if ok, err := d.Announce(ctx, documents.Notice{Position: 10}, true); !ok || err != nil {
		t.Fatalf("initial announce: ok=%v err=%v", ok, err)
	}
	n := documents.Notice{Programs: []string{"p1"}, Episodes: []string{"e1", "e2"}, Position: 12, Browse: true, Search: true}
	if ok, err := d.Announce(ctx, n, false); !ok || err != nil {
		t.Fatalf("announce: ok=%v err=%v", ok, err)
	}
	if pos, ok, err := d.Position(ctx); pos != 12 || !ok || err != nil {
		t.Fatalf("position %d %v %v, want 12", pos, ok, err)
	}
	for _, k := range []string{ks.GenBrowse(), ks.GenSearch()} {
		if v, err := c.Get(ctx, k).Int(); v != 1 || err != nil {
			t.Errorf("%s = %d (%v), want 1", k, v, err)
		}
	}
	var msgs []string
	deadline := time.After(5 * time.Second)
	for len(msgs) < 3 {
		select {
		case m := <-sub.Channel():
			msgs = append(msgs, m.Payload)
		case <-deadline:
			t.Fatalf("got %d messages, want 3: %q", len(msgs), msgs)
		}
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(msgs[2]), &last); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"programs": []any{"p1"}, "episodes": []any{"e1", "e2"}, "position": 12.0}
	if !reflect.DeepEqual(last, want) {
		t.Errorf("message %s, want %v", msgs[2], want)
	}
	if msgs[0] != `{"programs":[],"episodes":[],"position":5}` {
		t.Errorf("first message %s: lists must never be null", msgs[0])
	}
}

// TestCluster runs the documents store on a one-node Redis Cluster (every slot on
// one server): a script whose keys were in different slots would fail with CROSSSLOT.
func TestCluster(t *testing.T) {
	t.Parallel()
	addr := startClusterNode(t)
	c, err := mmredis.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*goredis.ClusterClient); !ok {
		t.Fatalf("client %T, want a cluster client", c)
	}
	d, err := mmredis.NewDocuments(c, mmredis.CatalogKeyspace(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ws []documents.Write
	for i := range 50 {
		id := fmt.Sprintf("0190d5a0-0000-7000-8000-%012d", i)
		ws = append(ws,
			documents.Write{Kind: documents.KindProgram, ID: id, Guard: 1, Value: []byte(`{}`)},
			documents.Write{Kind: documents.KindEpisodes, ID: id, Guard: 1, Value: []byte(`[]`)},
			documents.Write{Kind: documents.KindEpisode, ID: id, Guard: 1})
	}
	changed, err := d.Write(ctx, ws)
	if err != nil {
		t.Fatalf("write on a cluster: %v", err)
	}
	if !changed[0] || changed[2] {
		t.Errorf("changed %v", changed[:3])
	}
	if ok, err := d.Announce(ctx, documents.Notice{Position: 1, Browse: true}, true); !ok || err != nil {
		t.Fatalf("announce on a cluster: %v %v", ok, err)
	}
}

// startClusterNode starts redis-server in cluster mode, owning every slot, and
// returns its address. Both of its ports (client and cluster bus) are chosen
// explicitly below the ephemeral range: the default bus port (client+10000)
// can land on a port another process holds. A server that exits at start (a
// port taken between the check and the bind) is retried on new ports.
func startClusterNode(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (apt-get install redis-server): %v", err)
	}
	next := 21000 + os.Getpid()%5000
	var lastOut string
	for attempt := range 5 {
		port := freePort(&next)
		bus := freePort(&next)
		dir := t.TempDir()
		var out syncBuffer
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--cluster-port", fmt.Sprint(bus),
			"--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--dir", dir, "--save", "", "--appendonly", "no")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if clusterReady(t, addr, exited) {
			return addr
		}
		lastOut = out.String()
		t.Logf("attempt %d: redis cluster node on %s exited at start:\n%s", attempt+1, addr, lastOut)
	}
	t.Fatalf("redis cluster node did not start in 5 attempts; last output:\n%s", lastOut)
	return ""
}

// clusterReady waits for the node to answer, gives it every slot and waits for
// cluster_state:ok. It returns false when the process exited first.
func clusterReady(t *testing.T, addr string, exited <-chan struct{}) bool {
	t.Helper()
	node := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for node.Ping(ctx).Err() != nil {
		select {
		case <-exited:
			return false
		case <-ctx.Done():
			t.Fatalf("redis cluster node at %s did not answer in 20 s", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := node.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		t.Fatalf("cluster addslots: %v", err)
	}
	for {
		info, err := node.ClusterInfo(ctx).Result()
		if err == nil && containsLine(info, "cluster_state:ok") {
			return true
		}
		select {
		case <-exited:
			return false
		case <-ctx.Done():
			t.Fatalf("cluster state never became ok: %v %s", err, info)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns the first port from *next on that can be bound now and
// moves *next past it.
func freePort(next *int) int {
	for p := *next; ; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			*next = p + 1
			return p
		}
	}
}

// syncBuffer collects a child process's output safely across goroutines.
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

func containsLine(s, line string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		l := s[:i]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if l == line {
			return true
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return false
}
