package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	pgsearch "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/catalog/catalogtest"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

// Targets of the issue "Projections", point 5.
const (
	TargetProjectEventsPerS = 20000
	TargetFreshnessP99Ms    = 250
)

// ProjectConfig configures Project. Zero values take the defaults.
type ProjectConfig struct {
	// DatabaseURL is a migrated scratch database; Project empties and fills its
	// catalog, editorial and search tables, its event store and checkpoints.
	DatabaseURL string
	// Events is the size of the generated stream of "project" (default 200,000).
	Events int
	// Rate is the steady command rate of "freshness" (default 500 commands/s),
	// measured for Duration (default 10 s) after Warmup (default 2 s).
	Rate             int
	Duration, Warmup time.Duration
	// Programs is how many published programs the freshness commands edit
	// (default 500).
	Programs int
	// Progress receives a line per phase (nil: none).
	Progress io.Writer
	// Logger receives the runtime's warnings (nil: discarded).
	Logger *slog.Logger
}

func (c ProjectConfig) withDefaults() ProjectConfig {
	if c.Events <= 0 {
		c.Events = 200_000
	}
	if c.Rate <= 0 {
		c.Rate = 500
	}
	if c.Programs <= 0 {
		c.Programs = 500
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Project measures the projection side of issue 3 and returns three results:
//
//   - project: events/s from Kafka into the catalog read models. A generated catalog
//     history of Events events (catalogtest) is published to content.events (20
//     partitions, keyed by program, the relay's message format) on a kfake broker in
//     this process; then the catalog projection consumes it through the projection
//     runtime in the Kafka mode (kafka.Source: its consumer group, batches of 1,000
//     per partition, offsets committed after each batch's transaction) until its
//     group has committed the end of every partition. Baseline: copy_rows.
//   - copy_rows: PostgreSQL COPY of the rows that projection produced (programs,
//     episodes, categories) into empty tables of the same shape and indexes, in the
//     same run, counted in source events per second: the cost of writing the end
//     state with no per-event work at all.
//   - freshness: in the embedded mode, the time from a command being accepted (the
//     command handler returned its position) to the catalog read model including it
//     (the runtime's commit notification for the catalog reaching that position), at
//     a steady Rate of commands (program title edits over Programs published programs),
//     with the runtime running the catalog, editorial and search projections as
//     `serve` does.
func Project(ctx context.Context, c ProjectConfig) ([]Result, error) {
	c = c.withDefaults()
	pool, err := pgxpool.New(ctx, c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench project: %w", err)
	}
	defer pool.Close()
	if err := resetProjections(ctx, pool); err != nil {
		return nil, err
	}
	proj, base, err := projectFromKafka(ctx, pool, c)
	if err != nil {
		return nil, err
	}
	if err := resetProjections(ctx, pool); err != nil {
		return nil, err
	}
	fresh, err := freshness(ctx, pool, c)
	if err != nil {
		return nil, err
	}
	return []Result{proj, fresh, base}, nil
}

// resetProjections empties the read models, checkpoints and the event store.
func resetProjections(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `TRUNCATE catalog_programs_v1, catalog_episodes_v1, catalog_categories_v1, catalog_images_v1, catalog_documents_outbox_v1,
		editorial_programs_v1, search_state_v1, projection_checkpoints, projection_dead_letters, eventstore_events, eventstore_streams`)
	if err == nil {
		_, err = pool.Exec(ctx, `DROP TABLE IF EXISTS search_programs_v1, bench_copy_programs, bench_copy_episodes, bench_copy_categories`)
	}
	if err != nil {
		return fmt.Errorf("bench project: reset: %w", err)
	}
	return nil
}

// startKafka starts an in-process kfake broker listening below the ephemeral port
// range and creates content.events.
func startKafka(ctx context.Context) (*kfake.Cluster, kafka.Config, error) {
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(listenLowPort))
	if err != nil {
		return nil, kafka.Config{}, fmt.Errorf("start kfake: %w", err)
	}
	cfg := kafka.Config{Brokers: cl.ListenAddrs()}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(tctx, cfg, kafka.Topics()...); err != nil {
		cl.Close()
		return nil, kafka.Config{}, err
	}
	return cl, cfg, nil
}

func listenLowPort(network, address string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil || port != "0" {
		return net.Listen(network, address)
	}
	var last error
	for range 100 {
		ln, err := net.Listen(network, net.JoinHostPort(host, fmt.Sprint(20000+rand.IntN(12000))))
		if err == nil {
			return ln, nil
		}
		last = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, last
}

// publishHistory produces hist to content.events as the relay does (value: the
// envelope as JSON; key: the program id), in batches.
func publishHistory(cfg kafka.Config, hist []events.Envelope) error {
	sc, err := kafka.NewSaramaConfig(cfg)
	if err != nil {
		return err
	}
	p, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer p.Close()
	codec := events.NewCodec()
	batch := make([]*sarama.ProducerMessage, 0, 2000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.SendMessages(batch); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for _, e := range hist {
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		key := e.StreamID
		if ev, err := codec.DecodeEnvelope(e); err == nil && events.ProgramIDOf(ev) != "" {
			key = events.ProgramIDOf(ev)
		}
		batch = append(batch, &sarama.ProducerMessage{Topic: kafka.TopicContentEvents, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(v)})
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// projectFromKafka measures "project" and its baseline.
func projectFromKafka(ctx context.Context, pool *pgxpool.Pool, c ProjectConfig) (Result, Result, error) {
	fmt.Fprintf(c.Progress, "project: generating %d events\n", c.Events)
	hist := catalogtest.Interleave(7, catalogtest.Generate(7, c.Events))
	cl, cfg, err := startKafka(ctx)
	if err != nil {
		return Result{}, Result{}, err
	}
	defer cl.Close()
	fmt.Fprintf(c.Progress, "project: publishing %d events to %s (20 partitions)\n", len(hist), kafka.TopicContentEvents)
	if err := publishHistory(cfg, hist); err != nil {
		return Result{}, Result{}, err
	}
	src, err := kafka.NewSource(cfg, kafka.SourceOptions{Logger: c.Logger})
	if err != nil {
		return Result{}, Result{}, err
	}
	rt, err := runtime.New(pool, pgstore.New(pool), []runtime.Projection{catalog.New(nil)}, runtime.Options{Stream: src, Logger: c.Logger})
	if err != nil {
		return Result{}, Result{}, err
	}
	fmt.Fprintf(c.Progress, "project: consuming\n")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu := newCPUMeter(ctx, pool)
	start := time.Now()
	go func() { done <- rt.Run(rctx) }()
	err = waitGroupDone(ctx, cfg, kafka.GroupName(runtime.ConsumerName(catalog.New(nil))))
	elapsed := time.Since(start)
	own, db := cpu.stop()
	cancel()
	if rerr := <-done; rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return Result{}, Result{}, err
	}
	proj := Measure("project", "events", Stats{Ops: int64(len(hist)), Units: int64(len(hist)), Elapsed: elapsed})
	var programs, episodes int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM catalog_programs_v1), (SELECT count(*) FROM catalog_episodes_v1)`).Scan(&programs, &episodes); err != nil {
		return Result{}, Result{}, fmt.Errorf("count rows: %w", err)
	}
	proj.AddNote(fmt.Sprintf("%d generated events (%d programs, %d episodes) on a kfake broker in this process; the catalog projection in its consumer group, through the runtime's Kafka mode; timed until the group committed the end of every partition", len(hist), programs, episodes))
	if own > 0 {
		n := float64(len(hist))
		proj.AddNote(fmt.Sprintf("CPU per event, a measure the machine's load does not skew: %.1f µs in this process (broker included), %.1f µs in the database's backends", float64(own.Microseconds())/n, float64(db.Microseconds())/n))
	}

	fmt.Fprintf(c.Progress, "project: baseline COPY of %d programs and %d episodes\n", programs, episodes)
	copyElapsed, rows, err := copyBaseline(ctx, pool)
	if err != nil {
		return Result{}, Result{}, err
	}
	base := Measure("copy_rows", "events", Stats{Ops: int64(len(hist)), Units: int64(len(hist)), Elapsed: copyElapsed})
	base.AddNote(fmt.Sprintf("baseline of project: COPY of the %d rows the projection produced into empty tables of the same shape and indexes, counted in the %d source events", rows, len(hist)))
	proj.SetBaseline(BaselineOf(base))
	proj.AddTarget("throughput_per_s", AtLeast, TargetProjectEventsPerS)
	return proj, base, nil
}

// waitGroupDone waits until group has committed the end offset of every partition
// of content.events.
func waitGroupDone(ctx context.Context, cfg kafka.Config, group string) error {
	sc, err := kafka.NewSaramaConfig(cfg)
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return err
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return err
	}
	parts, err := client.Partitions(kafka.TopicContentEvents)
	if err != nil {
		return err
	}
	ends := map[int32]int64{}
	for _, p := range parts {
		if ends[p], err = client.GetOffset(kafka.TopicContentEvents, p, sarama.OffsetNewest); err != nil {
			return err
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{kafka.TopicContentEvents: parts})
		done := err == nil // an error is a group that does not exist yet
		for _, p := range parts {
			if !done {
				break
			}
			b := offs.GetBlock(kafka.TopicContentEvents, p)
			if ends[p] > 0 && (b == nil || b.Offset < ends[p]) {
				done = false
				break
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// copyBaseline COPYs the catalog's rows into empty clones of its tables and
// returns the time and the rows copied.
func copyBaseline(ctx context.Context, pool *pgxpool.Pool) (time.Duration, int64, error) {
	type table struct{ from, to string }
	tables := []table{
		{catalog.ProgramsTable, "bench_copy_programs"},
		{catalog.EpisodesTable, "bench_copy_episodes"},
		{catalog.CategoriesTable, "bench_copy_categories"},
	}
	data := make([][][]any, len(tables))
	cols := make([][]string, len(tables))
	for i, t := range tables {
		if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (LIKE %s INCLUDING ALL)`, t.to, t.from)); err != nil {
			return 0, 0, fmt.Errorf("create %s: %w", t.to, err)
		}
		rows, err := pool.Query(ctx, "SELECT * FROM "+t.from)
		if err != nil {
			return 0, 0, err
		}
		for _, f := range rows.FieldDescriptions() {
			cols[i] = append(cols[i], f.Name)
		}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				rows.Close()
				return 0, 0, err
			}
			data[i] = append(data[i], v)
		}
		if err := rows.Err(); err != nil {
			return 0, 0, err
		}
	}
	var n int64
	start := time.Now()
	for i, t := range tables {
		c, err := pool.CopyFrom(ctx, pgx.Identifier{t.to}, cols[i], pgx.CopyFromRows(data[i]))
		if err != nil {
			return 0, 0, fmt.Errorf("copy into %s: %w", t.to, err)
		}
		n += c
	}
	return time.Since(start), n, nil
}

// freshness measures command accepted → visible in the catalog read model.
func freshness(ctx context.Context, pool *pgxpool.Pool, c ProjectConfig) (Result, error) {
	store := pgstore.New(pool)
	h := app.NewHandlers(store)
	idx, err := pgsearch.New(pool)
	if err != nil {
		return Result{}, err
	}
	sp, err := search.New(idx, nil)
	if err != nil {
		return Result{}, err
	}
	rt, err := runtime.New(pool, store, []runtime.Projection{catalog.New(nil), editorial.New(nil), sp}, runtime.Options{Logger: c.Logger})
	if err != nil {
		return Result{}, err
	}
	obs, err := newObserver(ctx, pool)
	if err != nil {
		return Result{}, err
	}
	defer obs.close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Go(func() { _ = rt.Run(rctx) })
	bg.Go(func() { obs.run(rctx) })

	programs := c.Programs
	fmt.Fprintf(c.Progress, "freshness: creating %d published programs\n", programs)
	meta := app.Meta{Actor: "bench"}
	ids := make([]string, programs)
	for i := range ids {
		res, err := h.CreateProgram.Handle(ctx, app.CreateProgram{Meta: meta, Title: fmt.Sprintf("Fresh %d", i), Category: "documentary", Language: "en"})
		if err != nil {
			return Result{}, fmt.Errorf("create program: %w", err)
		}
		ids[i] = res.ID
		if _, err := h.PublishProgram.Handle(ctx, app.PublishProgram{Meta: meta, ProgramID: res.ID}); err != nil {
			return Result{}, fmt.Errorf("publish program: %w", err)
		}
	}

	fmt.Fprintf(c.Progress, "freshness: %d commands/s for %s after %s of warm-up\n", c.Rate, c.Duration, c.Warmup)
	interval := time.Second / time.Duration(c.Rate)
	start := time.Now()
	measureFrom := start.Add(c.Warmup)
	end := measureFrom.Add(c.Duration)
	work := make(chan int, c.Rate)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	var errs int64
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			for n := range work {
				title := fmt.Sprintf("Fresh title %d", n)
				res, err := h.UpdateProgram.Handle(ctx, app.UpdateProgram{Meta: meta, ProgramID: ids[n%programs], Title: &title})
				accepted := time.Now()
				if err != nil {
					mu.Lock()
					errs++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				obs.expect(res.Position, accepted, !accepted.Before(measureFrom) && accepted.Before(end))
			}
		})
	}
	late := 0
	for n := 0; ; n++ {
		at := start.Add(time.Duration(n) * interval)
		if !at.Before(end) || ctx.Err() != nil {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		select {
		case work <- n:
		default:
			late++ // every worker busy: the command is dropped, and counted
		}
	}
	close(work)
	wg.Wait()
	lat, pending := obs.wait(ctx, 10*time.Second)
	s := Stats{Ops: int64(len(lat)), Units: int64(len(lat)), Errors: errs + int64(pending), FirstError: firstErr, Elapsed: c.Duration, Latencies: lat}
	r := Measure("freshness", "commands", s)
	r.AddNote(fmt.Sprintf("embedded mode: %d commands/s (program title edits) through the command handlers; visible = the catalog's commit notification reached the command's position; runtime with catalog, editorial and search", c.Rate))
	if late > 0 || pending > 0 {
		r.AddNote(fmt.Sprintf("%d commands not sent (all 64 workers busy), %d never visible within 10 s", late, pending))
	}
	r.AddTarget("p99_ms", AtMost, TargetFreshnessP99Ms)
	return r, nil
}

// observer turns the runtime's commit notifications for the catalog into
// accepted → visible latencies.
type observer struct {
	conn *pgx.Conn

	mu      sync.Mutex
	applied int64 // highest catalog position notified
	pending []pendingCommand
	lat     []time.Duration
	changed chan struct{}
}

type pendingCommand struct {
	pos      int64
	accepted time.Time
	measured bool
}

func newObserver(ctx context.Context, pool *pgxpool.Pool) (*observer, error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{runtime.NotifyChannel}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("observer: listen: %w", err)
	}
	return &observer{conn: conn, changed: make(chan struct{}, 1)}, nil
}

func (o *observer) close() { _ = o.conn.Close(context.Background()) }

func (o *observer) run(ctx context.Context) {
	for {
		n, err := o.conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		var msg runtime.Notification
		if json.Unmarshal([]byte(n.Payload), &msg) != nil || msg.Name != catalog.Name {
			continue
		}
		o.mu.Lock()
		o.applied = max(o.applied, msg.Position)
		keep := o.pending[:0]
		for _, p := range o.pending {
			if p.pos <= o.applied {
				if p.measured {
					o.lat = append(o.lat, max(0, now.Sub(p.accepted)))
				}
				continue
			}
			keep = append(keep, p)
		}
		o.pending = keep
		o.mu.Unlock()
		select {
		case o.changed <- struct{}{}:
		default:
		}
	}
}

// expect registers an accepted command at pos.
func (o *observer) expect(pos int64, accepted time.Time, measured bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if pos <= o.applied { // already visible when it was registered
		if measured {
			o.lat = append(o.lat, max(0, time.Since(accepted)))
		}
		return
	}
	o.pending = append(o.pending, pendingCommand{pos: pos, accepted: accepted, measured: measured})
}

// wait waits up to timeout for the pending commands and returns the latencies and
// how many measured commands never became visible.
func (o *observer) wait(ctx context.Context, timeout time.Duration) ([]time.Duration, int) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
waiting:
	for {
		o.mu.Lock()
		n := len(o.pending)
		o.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-o.changed:
		case <-timer.C:
			break waiting
		case <-ctx.Done():
			break waiting
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	missing := 0
	for _, p := range o.pending {
		if p.measured {
			missing++
		}
	}
	lat := append([]time.Duration(nil), o.lat...)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, missing
}

// cpuMeter measures the CPU time of this process and of the database backends
// serving pool (Linux: /proc), so a result can say what it cost besides how long
// it took on a machine that may be busy with other work.
type cpuMeter struct {
	pool  *pgxpool.Pool
	own0  time.Duration
	mu    sync.Mutex
	pids  map[int]time.Duration // backend pid → CPU when first seen
	last  map[int]time.Duration // backend pid → CPU when last seen
	stopc chan struct{}
	done  chan struct{}
}

func newCPUMeter(ctx context.Context, pool *pgxpool.Pool) *cpuMeter {
	m := &cpuMeter{pool: pool, own0: processCPU(), pids: map[int]time.Duration{}, last: map[int]time.Duration{},
		stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample(ctx)
			select {
			case <-m.stopc:
				m.sample(ctx)
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *cpuMeter) sample(ctx context.Context) {
	rows, err := m.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pid := range pids {
		c, ok := backendCPU(int(pid))
		if !ok {
			continue
		}
		if _, seen := m.pids[int(pid)]; !seen {
			m.pids[int(pid)] = c
		}
		m.last[int(pid)] = c
	}
}

// stop returns the CPU time of this process and of the backends since the start
// (0, 0 where it cannot be read).
func (m *cpuMeter) stop() (own, db time.Duration) {
	close(m.stopc)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, first := range m.pids {
		db += m.last[pid] - first
	}
	if p := processCPU(); p > 0 {
		own = p - m.own0
	}
	return own, db
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU reads a process's user and system CPU time from /proc (Linux).
func backendCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true // USER_HZ is 100 on Linux
}
