package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/search"
)

// corpus generates a deterministic catalog: titles of two to four words drawn from
// a Zipf-distributed vocabulary (English function words first, then 30,000
// pronounceable made-up words), so a few words are in thousands of titles and most
// in a handful, as in real catalogs; descriptions of ten to twenty words, tags,
// episode titles, 24 categories and 10 languages.
type corpus struct {
	rnd   *rand.Rand
	vocab []string       // by decreasing frequency
	rank  map[string]int // word -> index in vocab
	zipf  *rand.Zipf
	tags  []string
}

// commonWords head the vocabulary, so the most frequent words are the short
// function words of real titles and descriptions ("the", "of", "a").
var commonWords = strings.Fields(`the of and a to in is you that it he was for on are as with his they at be
	this have from or one had by word but not what all were we when your can said there use an each which she
	do how their if will up other about out many then them these so some her would make like him into time has
	look two more write go see number no way could people my than first water been call who oil its now find
	long down day did get come made may part over new sound take only little work know place year live me back
	give most very after thing our just name good man think say great where help through much before line right
	too mean old any same tell boy follow came want show also around form three small set put end does another
	well large must big even such because turn here why ask went men read need land different home us move try
	kind hand picture again change off play spell air away animal house point page letter mother answer found
	study still learn should world high every near add food between own below country plant last school father
	keep tree never start city earth eye light thought head under story saw left few while along might close
	something seem next hard open example begin life always those both paper together got group often run`)

func newCorpus(seed uint64) *corpus {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// Syllables of an English-like phonotactics: enough onsets, nuclei and codas
	// that letter trigrams are as varied as in real text (a poorer alphabet makes
	// every trigram common and the trigram index far slower than in practice).
	onsets := strings.Fields("b c d f g h j k l m n p r s t v w y z bl br ch cl cr dr fl fr gl gr pl pr sc sh sk sl sm sn sp st sw th tr wh qu")
	nuclei := strings.Fields("a e i o u y a e i o u ai ea ee oo ou ie oa au")
	codas := append(strings.Fields("n r s t l m d ck ng nd st rt ll ss nt sh ch th x rk lt mp ft"), "", "", "", "", "", "", "")
	seen := map[string]bool{}
	vocab := slices.Clone(commonWords)
	for _, w := range vocab {
		seen[w] = true
	}
	for len(vocab) < 30000 {
		var b strings.Builder
		for s := 1 + rnd.IntN(3); s > 0; s-- {
			if s == 1 || rnd.IntN(3) > 0 {
				b.WriteString(onsets[rnd.IntN(len(onsets))])
			}
			b.WriteString(nuclei[rnd.IntN(len(nuclei))])
			if s == 1 || rnd.IntN(4) == 0 {
				b.WriteString(codas[rnd.IntN(len(codas))])
			}
		}
		w := b.String()
		if len(w) >= 3 && !seen[w] {
			seen[w] = true
			vocab = append(vocab, w)
		}
	}
	tags := make([]string, 300)
	for i := range tags {
		tags[i] = vocab[rnd.IntN(len(vocab))] + "-" + vocab[rnd.IntN(len(vocab))]
	}
	rank := make(map[string]int, len(vocab))
	for i, w := range vocab {
		rank[w] = i
	}
	return &corpus{
		rnd:   rnd,
		vocab: vocab,
		rank:  rank,
		// s = 1.05, v = 20: the most frequent word is about 1% of all words and in a
		// fifth of the documents, the 100 most frequent ones in a thousand or more.
		zipf: rand.NewZipf(rnd, 1.05, 20, uint64(len(vocab)-1)),
		tags: tags,
	}
}

func (c *corpus) word() string { return c.vocab[c.zipf.Uint64()] }

func (c *corpus) words(min, max int) string {
	n := min + c.rnd.IntN(max-min+1)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = c.word()
	}
	s := strings.Join(ws, " ")
	return strings.ToUpper(s[:1]) + s[1:]
}

func (c *corpus) doc(i int) search.Document {
	d := search.Document{
		ID:          fmt.Sprintf("0190d5a0-0000-7000-8000-%012d", i),
		Title:       c.words(2, 4),
		Description: c.words(10, 20) + ".",
		Category:    fmt.Sprintf("cat%02d", c.zipf.Uint64()%24),
		Language:    []string{"en", "en-GB", "fr", "de", "sv", "es", "it", "nl", "pt", "da"}[c.rnd.IntN(10)],
		PublishedAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(c.rnd.IntN(5*365*24*3600)) * time.Second),
		Version:     1,
	}
	for t := c.rnd.IntN(4); t > 0; t-- {
		d.Tags = append(d.Tags, c.tags[c.rnd.IntN(len(c.tags))])
	}
	for e := c.rnd.IntN(6); e > 0; e-- {
		d.EpisodeTitles = append(d.EpisodeTitles, c.words(1, 3))
	}
	d.EpisodeCount = len(d.EpisodeTitles)
	return d
}

// typo drops, doubles or replaces one letter of w.
func (c *corpus) typo(w string) string {
	i := 1 + c.rnd.IntN(len(w)-1)
	switch c.rnd.IntN(3) {
	case 0:
		return w[:i] + w[i+1:]
	case 1:
		return w[:i] + w[i:i+1] + w[i:]
	default:
		return w[:i] + "x" + w[i+1:]
	}
}

// rarest returns the title word drawn least often (highest vocabulary rank).
func (c *corpus) rarest(ws []string) string {
	best := ws[0]
	for _, w := range ws[1:] {
		if c.rank[w] > c.rank[best] {
			best = w
		}
	}
	return best
}

// queries draws the searches of users looking for a program of the catalog, as
// search logs show them: the full title (30%), its most distinctive word (25%), two
// consecutive words (15%), a typo in the distinctive word (15%), or the title as it
// is being typed (15%); a fifth of them filtered by the program's category or
// language, a tenth asking for page 2.
func (c *corpus) queries(docs []search.Document, n int) []search.Query {
	qs := make([]search.Query, n)
	for i := range qs {
		d := docs[c.rnd.IntN(len(docs))]
		ws := strings.Fields(strings.ToLower(d.Title))
		var q search.Query
		switch r := c.rnd.IntN(100); {
		case r < 30:
			q.Text = strings.Join(ws, " ")
		case r < 55:
			q.Text = c.rarest(ws)
		case r < 70:
			j := c.rnd.IntN(len(ws) - 1)
			q.Text = ws[j] + " " + ws[j+1]
		case r < 85:
			w := c.rarest(ws)
			if len(w) >= 5 {
				w = c.typo(w)
			}
			q.Text = w
		default:
			q.Text = ws[0] + " " + ws[1][:min(len(ws[1]), 1+c.rnd.IntN(3))]
		}
		c.decorate(&q, d)
		qs[i] = q
	}
	return qs
}

// broadQueries draws single words among the 300 most frequent, each in thousands
// of documents: the worst case, where every source is capped at search.MaxHits.
func (c *corpus) broadQueries(docs []search.Document, n int) []search.Query {
	qs := make([]search.Query, n)
	for i := range qs {
		qs[i].Text = c.vocab[c.rnd.IntN(300)]
		c.decorate(&qs[i], docs[c.rnd.IntN(len(docs))])
	}
	return qs
}

func (c *corpus) decorate(q *search.Query, d search.Document) {
	switch c.rnd.IntN(10) {
	case 0:
		q.Category = d.Category
	case 1:
		q.Language = d.Language
	}
	if c.rnd.IntN(10) == 0 {
		q.Page = 2
	}
}

const benchIndex = "programs_bench"

// loadBench builds a 100,000-document index through the adapter's own Upsert
// (batches of 1,000) in a fresh database that lives as long as b. With
// MEDIAMESH_BENCH_SEARCH_URL set, it uses that (migrated) database instead and
// keeps it, and an index that already holds the corpus is not loaded again.
func loadBench(b *testing.B) (*pgxpool.Pool, *searchpg.Index, []search.Document) {
	b.Helper()
	start := time.Now()
	ctx := context.Background()
	var pool *pgxpool.Pool
	if url := os.Getenv("MEDIAMESH_BENCH_SEARCH_URL"); url != "" {
		var err error
		if pool, err = pgxpool.New(ctx, url); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
	} else {
		pool, _ = pgtest.NewDB(b)
	}
	idx, err := searchpg.New(pool)
	if err != nil {
		b.Fatal(err)
	}
	if err := idx.EnsureIndex(ctx, benchIndex); err != nil {
		b.Fatal(err)
	}
	c := newCorpus(42)
	docs := make([]search.Document, 100_000)
	for i := range docs {
		docs[i] = c.doc(i)
	}
	var have int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM search_"+benchIndex).Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have == len(docs) {
		return pool, idx, docs
	}
	for i := 0; i < len(docs); i += 1000 {
		if err := idx.Upsert(ctx, benchIndex, docs[i:i+1000]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE search_"+benchIndex); err != nil {
		b.Fatal(err)
	}
	b.Logf("setup (generate and index 100,000 documents): %s", time.Since(start).Round(time.Millisecond))
	return pool, idx, docs
}

// BenchmarkSearch100k measures uncached searches over 100,000 programs with 16
// concurrent clients, reporting throughput and latency percentiles. Target: at
// least 500 searches/s with p99 ≤ 100 ms on the 2-core machine.
//
//	go test ./infra/search/postgres -run '^$' -bench Search100k -benchtime 5000x
func BenchmarkSearch100k(b *testing.B) {
	pool, idx, docs := loadBench(b)
	c := newCorpus(42) // the same vocabulary as the documents
	titles, broad := c.queries(docs, 20_000), c.broadQueries(docs, 20_000)
	b.Run("titles", func(b *testing.B) { benchSearch(b, pool, idx, titles) })
	b.Run("broad", func(b *testing.B) { benchSearch(b, pool, idx, broad) })
}

func benchSearch(b *testing.B, pool *pgxpool.Pool, idx *searchpg.Index, qs []search.Query) {
	ctx := context.Background()
	goBefore, pgBefore := processCPU(), backendsCPU(b, pool)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		next      int64
		hits      int
	)
	b.SetParallelism(8) // 8 × GOMAXPROCS clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		localHits := 0
		for pb.Next() {
			mu.Lock()
			q := qs[next%int64(len(qs))]
			next++
			mu.Unlock()
			t0 := time.Now()
			res, err := idx.Search(ctx, benchIndex, q)
			local = append(local, time.Since(t0))
			if err != nil {
				b.Error(err)
				return
			}
			if res.Total > 0 {
				localHits++
			}
		}
		mu.Lock()
		latencies = append(latencies, local...)
		hits += localHits
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	goCPU, pgCPU := processCPU()-goBefore, backendsCPU(b, pool).since(pgBefore)
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "searches/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(float64(hits)/float64(max(len(latencies), 1)), "hit-ratio")
	n := float64(max(len(latencies), 1))
	b.ReportMetric(pgCPU.Seconds()*1000/n, "pg-cpu-ms/op")
	b.ReportMetric(goCPU.Seconds()*1000/n, "go-cpu-ms/op")
	// What the machine's cores could serve if the benchmark had them to itself:
	// a shared machine's other load lowers searches/s but not the CPU per search.
	if cpu := (pgCPU + goCPU).Seconds(); cpu > 0 {
		b.ReportMetric(float64(goruntime.NumCPU())*n/cpu, "cpu-bound-searches/s")
	}
}

// processCPU is the user and system time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU maps the PostgreSQL backends of the pool's database to the CPU time
// they have used, read from /proc (the server runs on this machine).
type backendCPU map[int]time.Duration

func backendsCPU(b *testing.B, pool *pgxpool.Pool) backendCPU {
	b.Helper()
	rows, err := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	out := backendCPU{}
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // not on this machine, or gone
		}
		// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[int(pid)] = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return out
}

func (c backendCPU) since(before backendCPU) time.Duration {
	var d time.Duration
	for pid, t := range c {
		d += t - before[pid]
	}
	return d
}
