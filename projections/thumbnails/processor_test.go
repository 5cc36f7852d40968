package thumbnails_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	xwebp "golang.org/x/image/webp"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/events"
	blobfs "github.com/mediamesh/mediamesh/infra/blob/fs"
	eventstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/imaging"
	"github.com/mediamesh/mediamesh/infra/imaging/imagingtest"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is the write side, the blob store and a processor on one fresh database.
type world struct {
	pool     *pgxpool.Pool
	store    *eventstore.Store
	blobs    *blobfs.Store
	handlers app.Handlers
	upload   app.UploadAssetHandler
	purges   *purgeLog
	proc     *thumbnails.Processor
}

// purgeLog is a CDN purge webhook on 127.0.0.1 that records what it is sent; it
// answers status() for each call (200 when nil).
type purgeLog struct {
	mu     sync.Mutex
	calls  [][]string
	status func(call int) int
	srv    *httptest.Server
}

func newPurgeLog(t *testing.T) *purgeLog {
	t.Helper()
	p := &purgeLog{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			URLs []string `json:"urls"`
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad purge request", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.calls = append(p.calls, body.URLs)
		n := len(p.calls)
		st := p.status
		p.mu.Unlock()
		if st != nil {
			w.WriteHeader(st(n))
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *purgeLog) all() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.calls...)
}

// testSizes are the default sizes scaled down by ten, and the originals are small
// too: rendering is infra/imaging's to test, and under the race detector a 1280 px
// rendition takes seconds.
var testSizes = []thumbnails.Size{{Name: "small", Width: 16}, {Name: "medium", Width: 48}, {Name: "large", Width: 128}}

// newWorld builds a world whose processor renders testSizes (unless cfg says
// otherwise), as JPEG only unless webp: the WebP encoder's WebAssembly module takes
// seconds to compile under the race detector (once per test binary), so only the
// test that checks both formats pays for it.
func newWorld(t *testing.T, cfg thumbnails.Config, webp bool) *world {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	store := eventstore.New(pool)
	blobs, err := blobfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dec := imaging.NewDecoder(asset.Limits{}, 0)
	ins, _ := imaging.NewInspector(dec)
	renderer, _ := imaging.NewRenderer(dec, imaging.RenderOptions{NoWebP: !webp})
	purges := newPurgeLog(t)
	purger, err := thumbnails.NewWebhookPurger(purges.srv.URL, thumbnails.WebhookOptions{Attempts: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.Sizes == nil {
		cfg.Sizes = testSizes
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	proc, err := thumbnails.New(pool, thumbnails.Deps{
		Log: store, Streams: store, Blobs: blobs, Renderer: renderer,
		Recorder: app.NewRecordAssetProcessedHandler(store), Purger: purger,
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &world{pool: pool, store: store, blobs: blobs, handlers: app.NewHandlers(store),
		upload: app.NewUploadAssetHandler(store, ins, blobs, asset.Limits{}), purges: purges, proc: proc}
}

// Bounds of the waits: generous, since CI runs two race-instrumented test binaries
// on two cores, and a wait ends as soon as its condition holds.
const (
	waitTimeout = 2 * time.Minute
	stopTimeout = 30 * time.Second
)

// run starts the processor until the test ends or stop is called; stop returns
// once Run has.
func (w *world) run(t *testing.T, p *thumbnails.Processor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := stopped(done); err != nil {
				t.Errorf("processor run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// stopped waits for a cancelled Run's result, at most stopTimeout.
func stopped(done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-time.After(stopTimeout):
		return errors.New("the processor did not stop within " + stopTimeout.String() + " of its context's end")
	}
}

func (w *world) program(t *testing.T) string {
	t.Helper()
	res, err := w.handlers.CreateProgram.Handle(context.Background(), app.CreateProgram{Title: "Night Shift", Category: "drama", Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// eventually polls cond until it holds or the bounded wait ends; then it fails
// with what and, if given, the state that state describes.
func eventually(t *testing.T, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			var st []string
			for _, f := range state {
				st = append(st, f())
			}
			t.Fatalf("%s did not happen within %v %s", what, waitTimeout, strings.Join(st, " "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processed returns the asset's AssetProcessed events.
func (w *world) processed(t *testing.T, assetID string) []events.AssetProcessed {
	t.Helper()
	envs, err := w.store.ReadStream(context.Background(), events.AssetStreamID(assetID))
	if err != nil {
		t.Fatal(err)
	}
	var out []events.AssetProcessed
	for _, env := range envs {
		ev, err := events.NewCodec().DecodeEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := ev.(events.AssetProcessed); ok {
			out = append(out, p)
		}
	}
	return out
}

func decodeRendition(t *testing.T, data []byte, format string) image.Image {
	t.Helper()
	var img image.Image
	var err error
	if format == events.AssetFormatWebP {
		img, err = xwebp.Decode(bytes.NewReader(data))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(data))
	}
	if err != nil {
		t.Fatalf("%s rendition does not decode: %v", format, err)
	}
	return img
}

// TestUploadToProcessed is the path from an upload to AssetProcessed: the
// renditions are stored under their keys, in both formats, at the right sizes, and
// a replacement purges exactly the URLs whose content changed.
func TestUploadToProcessed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, thumbnails.Config{PurgeBaseURL: "https://cdn.example.com/"}, true)
	w.run(t, w.proc)
	ctx := context.Background()
	pid := w.program(t)

	up, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "poster", ProgramID: pid, Data: imagingtest.JPEG(t, 140, 210)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "AssetProcessed", func() bool { return len(w.processed(t, up.ID)) == 1 })
	p := w.processed(t, up.ID)[0]
	if p.UploadVersion != 1 || p.ProgramID != pid || p.Kind != "poster" || p.OriginalKey != up.OriginalKey || len(p.PurgedURLs) != 0 || p.PurgeError != "" {
		t.Fatalf("processed %+v", p)
	}
	want := map[string][2]int{"small": {16, 24}, "medium": {48, 72}, "large": {128, 192}}
	seen := map[string]bool{}
	for _, r := range p.Renditions {
		seen[r.Size+"/"+r.Format] = true
		if r.Key != events.AssetRenditionKey(up.ID, r.Size, r.Format) {
			t.Errorf("key %s for %s/%s", r.Key, r.Size, r.Format)
		}
		data, err := w.blobs.Read(ctx, r.Key)
		if err != nil {
			t.Fatalf("rendition %s: %v", r.Key, err)
		}
		info, _ := w.blobs.Stat(ctx, r.Key)
		img := decodeRendition(t, data, r.Format)
		d := want[r.Size]
		if b := img.Bounds(); b.Dx() != d[0] || b.Dy() != d[1] || r.Width != d[0] || r.Height != d[1] || r.Bytes != int64(len(data)) || info.ContentType != r.ContentType {
			t.Errorf("%s: decodes %d×%d (claims %d×%d, %d bytes, %s), want %v", r.Key, b.Dx(), b.Dy(), r.Width, r.Height, r.Bytes, info.ContentType, d)
		}
	}
	if len(seen) != 6 {
		t.Fatalf("renditions %v, want 3 sizes × jpeg and webp", seen)
	}
	if calls := w.purges.all(); len(calls) != 0 {
		t.Fatalf("a first upload purged %v", calls)
	}

	// Replace it: the renditions' content changes, so their URLs are purged.
	up2, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "poster", ProgramID: pid, Data: imagingtest.PNG(t, 60, 30, nil)})
	if err != nil || up2.ID != up.ID || up2.Version != 3 {
		t.Fatalf("replacement %+v %v", up2, err)
	}
	eventually(t, "the replacement's AssetProcessed", func() bool { return len(w.processed(t, up.ID)) == 2 })
	p2 := w.processed(t, up.ID)[1]
	if p2.UploadVersion != 3 || p2.PurgeError != "" {
		t.Fatalf("second result %+v", p2)
	}
	var wantURLs []string
	for _, s := range []string{"small", "medium", "large"} {
		for _, f := range []string{"jpg", "webp"} {
			wantURLs = append(wantURLs, "https://cdn.example.com/media/assets/"+up.ID+"/"+s+"."+f)
		}
	}
	calls := w.purges.all()
	if len(calls) != 1 {
		t.Fatalf("%d purge calls, want 1", len(calls))
	}
	got := append([]string(nil), calls[0]...)
	sort.Strings(got)
	sort.Strings(wantURLs)
	if strings.Join(got, " ") != strings.Join(wantURLs, " ") || len(p2.PurgedURLs) != 6 {
		t.Fatalf("purged %v, want %v (recorded %v)", got, wantURLs, p2.PurgedURLs)
	}
	large, _ := w.blobs.Read(ctx, events.AssetRenditionKey(up.ID, "large", "jpeg"))
	if b := decodeRendition(t, large, "jpeg").Bounds(); b.Dx() != 60 || b.Dy() != 30 {
		t.Fatalf("large after replacement is %v, want the new 60×30 image (never upscaled)", b)
	}

	st, err := w.proc.Status(ctx)
	if err != nil || st.Name != "thumbnails" || st.DeadLetters != 0 || st.Position == 0 {
		t.Fatalf("status %+v %v", st, err)
	}
}

// TestFailingImageIsDeadLetteredAndDoesNotBlock: an upload whose original cannot be
// rendered goes to the dead letters with a clear error, and the uploads after it
// are processed. A missing original, once restored, is processed by Replay.
func TestFailingImageIsDeadLetteredAndDoesNotBlock(t *testing.T) {
	t.Parallel()
	w := newWorld(t, thumbnails.Config{}, false)
	ctx := context.Background()
	pid := w.program(t)

	// Uploads the inspector would refuse, written behind its back: a corrupt
	// original, and one whose original is not stored at all.
	corrupt := imagingtest.TruncatedPNG(t)
	if err := w.blobs.Put(ctx, "originals/bad.png", corrupt, "image/png"); err != nil {
		t.Fatal(err)
	}
	appendUpload := func(assetID, key, sha string) {
		t.Helper()
		data, _ := json.Marshal(events.AssetUploaded{AssetID: assetID, ProgramID: pid, Kind: "backdrop", OriginalKey: key,
			ContentType: "image/png", Width: 300, Height: 200, Bytes: 100, SHA256: sha})
		if _, err := w.store.Append(ctx, events.AssetStreamID(assetID), events.ExpectNoStream, []events.Envelope{{Type: events.TypeAssetUploaded, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	badID, missingID := "0190d5a0-0000-7000-8000-00000000bad1", "0190d5a0-0000-7000-8000-00000000bad2"
	appendUpload(badID, "originals/bad.png", strings.Repeat("a", 64))
	appendUpload(missingID, "originals/missing.png", strings.Repeat("b", 64))
	good, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "poster", ProgramID: pid, Data: imagingtest.JPEG(t, 320, 200)})
	if err != nil {
		t.Fatal(err)
	}

	w.run(t, w.proc)
	eventually(t, "the good upload processed", func() bool { return len(w.processed(t, good.ID)) == 1 })
	eventually(t, "two dead letters", func() bool {
		dl, err := w.proc.DeadLetters(ctx, 10)
		return err == nil && len(dl) == 2
	})
	dl, _ := w.proc.DeadLetters(ctx, 10)
	byStream := map[string]string{}
	for _, d := range dl {
		byStream[d.StreamID] = d.Error
		if d.Projection != "thumbnails" || d.Type != events.TypeAssetUploaded {
			t.Errorf("dead letter %+v", d)
		}
	}
	if e := byStream["asset-"+badID]; !strings.Contains(e, "image cannot be processed") || !strings.Contains(e, "does not decode") {
		t.Errorf("corrupt image's error %q does not say why", e)
	}
	if e := byStream["asset-"+missingID]; !strings.Contains(e, "originals/missing.png") || !strings.Contains(e, "not found") {
		t.Errorf("missing original's error %q does not say why", e)
	}
	if len(w.processed(t, badID)) != 0 || len(w.processed(t, missingID)) != 0 {
		t.Fatal("a failed upload recorded a result")
	}
	st, _ := w.proc.Status(ctx)
	if st.DeadLetters != 2 {
		t.Fatalf("status dead letters %d", st.DeadLetters)
	}

	// The cause is fixed: the missing original appears. Replay processes it; the
	// corrupt one stays.
	if err := w.blobs.Put(ctx, "originals/missing.png", imagingtest.PNG(t, 300, 200, nil), "image/png"); err != nil {
		t.Fatal(err)
	}
	res, err := w.proc.Replay(ctx)
	if err != nil || res.Replayed != 1 || res.Remaining != 1 {
		t.Fatalf("replay %+v %v", res, err)
	}
	if n := len(w.processed(t, missingID)); n != 1 {
		t.Fatalf("replayed upload has %d results", n)
	}
	dl, _ = w.proc.DeadLetters(ctx, 10)
	if len(dl) != 1 || dl[0].StreamID != "asset-"+badID || dl[0].Attempts < 2 {
		t.Fatalf("dead letters after replay %+v", dl)
	}
}

// TestRestartProcessesOnce: a processor restarted (or a second one taking over)
// resumes from its checkpoint and records nothing twice; a failing purge is
// recorded, not retried forever.
func TestRestartProcessesOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, thumbnails.Config{PurgeBaseURL: "https://cdn.example.com"}, false)
	w.purges.mu.Lock()
	w.purges.status = func(int) int { return http.StatusServiceUnavailable }
	w.purges.mu.Unlock()
	ctx := context.Background()
	pid := w.program(t)
	first, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "thumbnail", ProgramID: pid, Data: imagingtest.JPEG(t, 200, 100)})
	if err != nil {
		t.Fatal(err)
	}

	runFor := func(cond func() bool, what string) {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.proc.Run(rctx) }()
		eventually(t, what, cond)
		cancel()
		if err := stopped(done); err != nil {
			t.Fatal(err)
		}
	}
	runFor(func() bool { return len(w.processed(t, first.ID)) == 1 }, "first result")
	if _, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "thumbnail", ProgramID: pid, Data: imagingtest.JPEG(t, 210, 100)}); err != nil {
		t.Fatal(err)
	}
	runFor(func() bool { return len(w.processed(t, first.ID)) == 2 }, "second result after a restart")

	// A third run from the checkpoint finds nothing to do.
	head, _ := w.store.HeadPosition(ctx)
	runFor(func() bool {
		st, err := w.proc.Status(ctx)
		return err == nil && st.Position == head
	}, "checkpoint at head")
	results := w.processed(t, first.ID)
	if len(results) != 2 {
		t.Fatalf("%d results after restarts, want 2", len(results))
	}
	if results[1].PurgeError == "" || !strings.Contains(results[1].PurgeError, "503") || len(results[1].PurgedURLs) != 3 {
		t.Fatalf("failing purge recorded as %+v", results[1])
	}
	if n := len(w.purges.all()); n != 3 {
		t.Fatalf("%d purge attempts, want the configured 3", n)
	}
}

// TestOneActiveProcessor: two processors of one name share the work without
// processing anything twice: one of them renders everything.
//
// The replacement is uploaded only once the first poster has its result. Uploaded
// together, the processor may reach the first poster after its replacement exists
// and rightly skip it as superseded (TestSupersededUploadIsSkipped), leaving one
// result where this test waits for two: under load it did, and the wait timed out.
func TestOneActiveProcessor(t *testing.T) {
	t.Parallel()
	w := newWorld(t, thumbnails.Config{}, false)
	other, err := thumbnails.New(w.pool, thumbnails.Deps{Log: w.store, Streams: w.store, Blobs: w.blobs,
		Renderer: mustRenderer(t), Recorder: app.NewRecordAssetProcessedHandler(w.store)}, thumbnails.Config{Logger: quiet, Sizes: testSizes})
	if err != nil {
		t.Fatal(err)
	}
	stopProc, stopOther := w.run(t, w.proc), w.run(t, other)
	ctx := context.Background()
	pid := w.program(t)
	upload := func(i int, kind string) string {
		t.Helper()
		res, err := w.upload.Handle(ctx, app.UploadAsset{Kind: kind, ProgramID: pid, Data: imagingtest.JPEG(t, 100+i, 80)})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	want := map[string]int{}
	results := func() string {
		var b strings.Builder
		for id, n := range want {
			fmt.Fprintf(&b, " %s: %d of %d;", id, len(w.processed(t, id)), n)
		}
		a, _ := w.proc.Counts()
		o, _ := other.Counts()
		fmt.Fprintf(&b, " rendered %d and %d", a, o)
		return b.String()
	}
	allProcessed := func() bool {
		for id, n := range want {
			if len(w.processed(t, id)) != n {
				return false
			}
		}
		return true
	}
	var ids []string
	for i, kind := range []string{"poster", "thumbnail", "backdrop"} {
		ids = append(ids, upload(i, kind))
		want[ids[i]] = 1
	}
	eventually(t, "three uploads processed", allProcessed, results)
	// The fourth upload replaces the first poster: that asset gets a second result.
	if id := upload(3, "poster"); id != ids[0] {
		t.Fatalf("the replacement is asset %s, want %s", id, ids[0])
	}
	want[ids[0]] = 2
	eventually(t, "the replacement processed", allProcessed, results)
	// A processor counts a rendition after recording it: stopped, its count is final.
	stopProc()
	stopOther()
	a, _ := w.proc.Counts()
	b, _ := other.Counts()
	if a > 0 && b > 0 || a+b != 4 {
		t.Fatalf("processors rendered %d and %d uploads, want 4 by one of them", a, b)
	}
}

// TestSupersededUploadIsSkipped: an upload replaced before the processor reached it
// is not rendered; only the newest upload of the asset gets a result.
func TestSupersededUploadIsSkipped(t *testing.T) {
	t.Parallel()
	w := newWorld(t, thumbnails.Config{}, false)
	ctx := context.Background()
	pid := w.program(t)
	first, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "poster", ProgramID: pid, Data: imagingtest.JPEG(t, 100, 80)})
	if err != nil {
		t.Fatal(err)
	}
	second, err := w.upload.Handle(ctx, app.UploadAsset{Kind: "poster", ProgramID: pid, Data: imagingtest.JPEG(t, 120, 80)})
	if err != nil || second.ID != first.ID || second.Version <= first.Version {
		t.Fatalf("replacement %+v after %+v: %v", second, first, err)
	}
	stop := w.run(t, w.proc)
	eventually(t, "the checkpoint past both uploads", func() bool {
		st, err := w.proc.Status(ctx)
		return err == nil && st.HeadPosition > 0 && st.Position == st.HeadPosition
	})
	stop() // its counts are final
	got := w.processed(t, first.ID)
	if len(got) != 1 || got[0].UploadVersion != second.Version || got[0].OriginalKey != second.OriginalKey {
		t.Fatalf("results %+v, want one, for upload version %d", got, second.Version)
	}
	if n, dead := w.proc.Counts(); n != 1 || dead != 0 {
		t.Fatalf("rendered %d, dead-lettered %d; want the newest upload rendered once", n, dead)
	}
}

func mustRenderer(t *testing.T) *imaging.Renderer {
	t.Helper()
	r, err := imaging.NewRenderer(imaging.NewDecoder(asset.Limits{}, 0), imaging.RenderOptions{NoWebP: true})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := thumbnails.New(nil, thumbnails.Deps{}, thumbnails.Config{Sizes: []thumbnails.Size{{Name: "", Width: 0}}})
	if err == nil || !strings.Contains(err.Error(), "nil database pool") || !strings.Contains(err.Error(), "required") || !strings.Contains(err.Error(), "invalid size") {
		t.Fatalf("err = %v", err)
	}
}
