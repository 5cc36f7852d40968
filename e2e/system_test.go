package e2e_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	pgsearch "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/documents"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/relay"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// projectorConfig is what a projector process needs; a child gets it as JSON in
// the environment (envProjector).
type projectorConfig struct {
	DatabaseURL string `json:"database_url"`
	// Namespace is the Redis key namespace of the test.
	Namespace string `json:"namespace"`
	// Brokers selects the Kafka mode when set.
	Brokers   []string `json:"brokers,omitempty"`
	BatchSize int      `json:"batch_size,omitempty"`
}

// projections returns the projections a projector runs over pool: the catalog
// (with its documents outbox), the editorial list and search (PostgreSQL adapter).
func projections(pool *pgxpool.Pool) ([]runtime.Projection, error) {
	idx, err := pgsearch.New(pool)
	if err != nil {
		return nil, err
	}
	sp, err := search.New(idx, nil)
	if err != nil {
		return nil, err
	}
	return []runtime.Projection{catalog.New(nil, catalog.WithDocuments()), editorial.New(nil), sp}, nil
}

// readModelTables are the PostgreSQL sinks compared by checksum.
var readModelTables = []string{
	catalog.ProgramsTable, catalog.EpisodesTable, catalog.CategoriesTable, editorial.ProgramsTable,
	search.StateTable, "search_" + search.IndexName(search.Version),
}

// runProjector runs the runtime and the documents flusher as `serve --role
// projector` would, until ctx ends.
func runProjector(ctx context.Context, cfg projectorConfig, log *slog.Logger) error {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	rc, err := mmredis.New(redistest.URL())
	if err != nil {
		return err
	}
	defer rc.Close()
	docs, err := mmredis.NewDocuments(rc, mmredis.CatalogKeyspace(catalog.Version).WithNamespace(cfg.Namespace), 0)
	if err != nil {
		return err
	}
	projs, err := projections(pool)
	if err != nil {
		return err
	}
	opts := runtime.Options{Logger: log, BatchSize: cfg.BatchSize, MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if len(cfg.Brokers) > 0 {
		src, err := kafka.NewSource(kafka.Config{Brokers: cfg.Brokers}, kafka.SourceOptions{BatchSize: cfg.BatchSize, Logger: log})
		if err != nil {
			return err
		}
		opts.Stream = src
	}
	rt, err := runtime.New(pool, pgstore.New(pool), projs, opts)
	if err != nil {
		return err
	}
	fl, err := documents.New(pool, docs, documents.Options{Logger: log, MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = rt.Run(ctx) })
	wg.Go(func() { errs[1] = fl.Run(ctx) })
	wg.Wait()
	return errors.Join(errs...)
}

// system is one test's MediaMesh: a database, the command API, a Redis namespace,
// and (in the Kafka mode) a kfake broker with the relay.
type system struct {
	pool    *pgxpool.Pool
	url     string
	store   *pgstore.Store
	app     *fiber.App
	signer  *jwtkeys.Signer
	redis   goredis.UniversalClient
	ns      string
	keys    mmredis.Keyspace
	brokers []string
	search  *pgsearch.Index
	// stopRelay ends the running relay (Kafka mode).
	stopRelay func()
}

// newSystem builds the write side and the stores; kafkaMode also starts kfake with
// content.events (20 partitions) and the relay.
func newSystem(t *testing.T, kafkaMode bool) *system {
	t.Helper()
	pool, url := pgtest.NewDB(t)
	store := pgstore.New(pool)
	cmds, editorialReads := api.FromHandlers(app.NewHandlers(store))
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jwtkeys.NewSigner(key, "mediamesh", "mediamesh")
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := jwtkeys.NewVerifier("mediamesh", "mediamesh", []ed25519.PublicKey{signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(api.Config{ConsistencySecret: key.Seed()}, api.Deps{
		Commands: cmds, Editorial: editorialReads, Tokens: verifier, Idempotency: postgres.NewIdempotencyStore(pool), Logger: quiet,
	})
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	idx, err := pgsearch.New(pool)
	if err != nil {
		t.Fatal(err)
	}
	s := &system{pool: pool, url: url, store: store, app: a, signer: signer, redis: rc, ns: ns,
		keys: mmredis.CatalogKeyspace(catalog.Version).WithNamespace(ns), search: idx}
	if kafkaMode {
		s.brokers = kafkatest.Start(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := kafka.EnsureTopics(ctx, kafka.Config{Brokers: s.brokers}, kafka.Topics()...); err != nil {
			t.Fatal(err)
		}
		s.stopRelay = s.startRelay(t)
	}
	return s
}

// startRelay runs the relay until the test ends; stop ends it earlier.
func (s *system) startRelay(t *testing.T) (stop func()) {
	t.Helper()
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: s.brokers}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(s.pool, s.store, pub, events.NewCodec(), relay.Config{Logger: quiet, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return background(t, "relay", func(ctx context.Context) error {
		defer pub.Close()
		if err := r.Run(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	})
}

// config is the projector configuration of this system.
func (s *system) config(batch int) projectorConfig {
	return projectorConfig{DatabaseURL: s.url, Namespace: s.ns, Brokers: s.brokers, BatchSize: batch}
}

// background runs fn until the test ends (or stop is called), failing the test if
// it returns an error.
func background(t *testing.T, name string, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// do sends one request to the api and returns the status and the decoded JSON body.
func (s *system) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	tok, err := s.signer.Mint("editor-1", api.RoleEditor, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
	}
	return res.StatusCode, m
}

// command sends a command and checks its status.
func (s *system) command(t *testing.T, want int, method, path, body string) map[string]any {
	t.Helper()
	status, m := s.do(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s: %d %v, want %d", method, path, status, m, want)
	}
	return m
}

// eventually retries cond every 10 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// programRow reads a catalog program's status and version.
func (s *system) programRow(id string) (status string, version int64, err error) {
	err = s.pool.QueryRow(context.Background(), `SELECT status, version FROM catalog_programs_v1 WHERE id = $1`, id).Scan(&status, &version)
	return status, version, err
}

// redisJSON reads a document; ok is false when the key does not exist.
func (s *system) redisJSON(t *testing.T, key string, into any) (bool, error) {
	t.Helper()
	v, err := s.redis.Get(context.Background(), key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(v, into)
}

// searchIDs runs a search and returns the program ids it found.
func (s *system) searchIDs(text string) ([]string, error) {
	res, err := s.search.Search(context.Background(), search.IndexName(search.Version), search.Query{Text: text})
	if errors.Is(err, search.ErrIndexNotFound) {
		return nil, nil
	}
	return res.IDs, err
}

// checksums returns an md5 of every row of each read-model table.
func checksums(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range readModelTables {
		var sum string
		var n int
		q := fmt.Sprintf(`SELECT md5(COALESCE(string_agg(t::text, E'\n' ORDER BY t::text), '')), count(*) FROM %s t`, pgx.Identifier{table}.Sanitize())
		if err := pool.QueryRow(context.Background(), q).Scan(&sum, &n); err != nil {
			t.Fatalf("checksum %s: %v", table, err)
		}
		out[table] = fmt.Sprintf("%s (%d rows)", sum, n)
	}
	return out
}

// redisDocs returns a checksum of the documents under ns (keys without it; the
// position and the generation counters excluded: they count flushes) and how many
// there are.
func redisDocs(t *testing.T, c goredis.UniversalClient, ns string) (string, int) {
	t.Helper()
	all := redistest.Dump(t, c, ns+"mm:catalog:v1:")
	keys := make([]string, 0, len(all))
	for k := range all {
		if strings.Contains(k, ":gen:") || strings.HasSuffix(k, ":position") {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", strings.TrimPrefix(k, ns), all[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16], len(keys)
}

// cleanProjection projects evs (read back from an event store, in order) into a
// fresh database and namespace, directly and without crashes, and returns its
// checksums: the reference a crashed projector must equal.
func cleanProjection(t *testing.T, evs []events.Envelope) (map[string]string, string, int) {
	t.Helper()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	projs, err := projections(pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range projs {
		for rest := evs; len(rest) > 0; {
			n := min(len(rest), 1000)
			if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return p.Apply(ctx, tx, rest[:n]) }); err != nil {
				t.Fatalf("clean projection %s: %v", p.Name(), err)
			}
			rest = rest[n:]
		}
	}
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	docs, err := mmredis.NewDocuments(rc, mmredis.CatalogKeyspace(catalog.Version).WithNamespace(ns), 0)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := documents.New(pool, docs, documents.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sum, n := redisDocs(t, rc, ns)
	return checksums(t, pool), sum, n
}

// readAll reads the whole global log.
func readAll(t *testing.T, store *pgstore.Store) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	var after int64
	for {
		evs, err := store.ReadAll(context.Background(), after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Position
	}
}

// jsonBody marshals v for a request body.
func jsonBody(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return b.String()
}
