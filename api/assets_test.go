package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image/jpeg"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/events"
	blobfs "github.com/mediamesh/mediamesh/infra/blob/fs"
	eventstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/imaging"
	"github.com/mediamesh/mediamesh/infra/imaging/imagingtest"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

// fakeUploader records uploads and answers like the real handler for a new image.
type fakeUploader struct {
	mu    sync.Mutex
	calls []app.UploadAsset
}

func (f *fakeUploader) Handle(_ context.Context, cmd app.UploadAsset) (app.AssetUploadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, cmd)
	id := "0190f1f4-0000-7000-8000-0000000000a1"
	return app.AssetUploadResult{
		Result:      app.Result{ID: id, ProgramID: knownProgram, StreamID: "asset-" + id, Version: 1, Position: 77, Changed: true, Created: true},
		Kind:        cmd.Kind,
		OriginalKey: "originals/" + strings.Repeat("a", 64) + ".jpg",
		RenditionKeys: map[string]string{
			"small": "assets/" + id + "/small.jpg", "medium": "assets/" + id + "/medium.jpg", "large": "assets/" + id + "/large.jpg",
		},
	}, nil
}

func (f *fakeUploader) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// testAssets is the Assets of newEnv: a recording uploader and an empty
// filesystem blob store.
func testAssets(t *testing.T) *api.Assets {
	t.Helper()
	store, err := blobfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &api.Assets{Upload: &fakeUploader{}, Media: store, MaxBytes: 64 << 10}
}

// part is one multipart field; a file part has a file name.
type part struct {
	name, filename, contentType string
	data                        []byte
}

func multipartBody(t *testing.T, parts ...part) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		var pw io.Writer
		var err error
		if p.filename != "" {
			h := make(map[string][]string)
			h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name=%q; filename=%q`, p.name, p.filename)}
			ct := p.contentType
			if ct == "" {
				ct = "application/octet-stream"
			}
			h["Content-Type"] = []string{ct}
			pw, err = w.CreatePart(h)
		} else {
			pw, err = w.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String(), w.FormDataContentType()
}

func field(name, value string) part { return part{name: name, data: []byte(value)} }

func file(data []byte, filename, ct string) part {
	return part{name: "file", filename: filename, contentType: ct, data: data}
}

func uploadReq(t *testing.T, bearer string, extra map[string]string, parts ...part) req {
	t.Helper()
	body, ct := multipartBody(t, parts...)
	h := map[string]string{"Content-Type": ct}
	for k, v := range extra {
		h[k] = v
	}
	return req{method: http.MethodPost, path: "/v1/assets", body: body, headers: h, bearer: bearer}
}

// checkAssetWrite checks an upload's success response: status, JSON keys, the ETag
// of the asset's version and a consistency token naming the asset's stream.
func checkAssetWrite(t *testing.T, e *env, res response, status int) map[string]any {
	t.Helper()
	if res.status != status || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %q, want %d: %s", res.status, res.header.Get("Content-Type"), status, res.body)
	}
	body := res.json(t)
	hasKeys(t, "upload response", body, "id", "version", "position", "urls")
	version := int64(body["version"].(float64))
	if res.header.Get("ETag") != fmt.Sprintf(`"%d"`, version) {
		t.Fatalf("ETag %q for version %d", res.header.Get("ETag"), version)
	}
	wp, err := e.tokens.Verify(res.header.Get(api.HeaderConsistencyToken))
	if err != nil {
		t.Fatalf("consistency token: %v", err)
	}
	if wp.Version != version || wp.Position != int64(body["position"].(float64)) || wp.StreamID != "asset-"+body["id"].(string) {
		t.Fatalf("token names %+v, body %v", wp, body)
	}
	hasKeys(t, "urls", body["urls"].(map[string]any), "original", "small", "medium", "large")
	return body
}

// TestUploadRequestIsStrict: what the api refuses before the command side runs.
func TestUploadRequestIsStrict(t *testing.T) {
	t.Parallel()
	assets := testAssets(t)
	e := newEnv(t, withDeps(func(d *api.Deps) { d.Assets = assets }))
	up := assets.Upload.(*fakeUploader)
	editor, viewer := e.token(t, "ed", api.RoleEditor), e.token(t, "v", api.RoleViewer)
	jpg := []byte("\xff\xd8\xff some jpeg")
	ok := []part{field("kind", "poster"), field("program_id", knownProgram), file(jpg, "p.jpg", "image/jpeg")}
	tests := []struct {
		name   string
		r      req
		status int
		kind   string
		field  string
	}{
		{"no token", uploadReq(t, "", nil, ok...), 401, "unauthorized", ""},
		{"viewer", uploadReq(t, viewer, nil, ok...), 403, "forbidden", ""},
		{"json body", req{method: "POST", path: "/v1/assets", body: `{"kind":"poster"}`, headers: jsonHeaders(), bearer: editor}, 415, "unsupported-media-type", ""},
		{"no boundary", req{method: "POST", path: "/v1/assets", body: "x", headers: map[string]string{"Content-Type": "multipart/form-data"}, bearer: editor}, 415, "unsupported-media-type", ""},
		{"gzip", uploadReq(t, editor, map[string]string{"Content-Encoding": "gzip"}, ok...), 415, "unsupported-media-type", ""},
		{"broken multipart", req{method: "POST", path: "/v1/assets", body: "--b\r\nnot a header\r\n", headers: map[string]string{"Content-Type": "multipart/form-data; boundary=b"}, bearer: editor}, 400, "bad-request", ""},
		{"no file", uploadReq(t, editor, nil, field("kind", "poster"), field("program_id", knownProgram)), 400, "validation", "file"},
		{"unknown field", uploadReq(t, editor, nil, append(ok, field("title", "x"))...), 400, "validation", "title"},
		{"two files", uploadReq(t, editor, nil, append(ok, file(jpg, "q.jpg", "image/jpeg"))...), 400, "validation", "file"},
		{"kind twice", uploadReq(t, editor, nil, append(ok, field("kind", "backdrop"))...), 400, "validation", "kind"},
		{"binary kind", uploadReq(t, editor, nil, field("kind", "post\x00er"), field("program_id", knownProgram), file(jpg, "p.jpg", "")), 400, "validation", "kind"},
		{"file over the limit", uploadReq(t, editor, nil, field("kind", "poster"), field("program_id", knownProgram), file(bytes.Repeat([]byte{0xff}, 64<<10+1), "big.jpg", "image/jpeg")), 413, "body-too-large", ""},
		{"body over the server limit", uploadReq(t, editor, nil, field("kind", "poster"), field("program_id", knownProgram), file(bytes.Repeat([]byte{0xff}, 300<<10), "big.jpg", "image/jpeg")), 413, "body-too-large", ""},
		{"bad If-Match", uploadReq(t, editor, map[string]string{"If-Match": "W/\"1\""}, ok...), 400, "validation", "If-Match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, tc.r)
			p := res.problem(t, tc.status)
			if !strings.HasSuffix(p.Type, ":"+tc.kind) {
				t.Fatalf("problem type %s, want %s", p.Type, tc.kind)
			}
			if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.field) {
				t.Fatalf("errors %+v, want field %s", p.Errors, tc.field)
			}
		})
	}
	if n := up.count(); n != 0 {
		t.Fatalf("the uploader ran %d times for refused requests", n)
	}
	// The good request reaches it, with the fields as sent and the bytes intact.
	res := e.do(t, uploadReq(t, editor, nil, ok...))
	if res.status != http.StatusCreated {
		t.Fatalf("good upload: %d %s", res.status, res.body)
	}
	if c := up.calls[0]; c.Kind != "poster" || c.ProgramID != knownProgram || c.EpisodeID != "" || !bytes.Equal(c.Data, jpg) || c.Meta.Actor != "ed" {
		t.Fatalf("command %+v", c)
	}
}

// assetWorld is the real write side behind the api, with the filesystem blob store
// and the imaging inspector, as the composition root wires them.
type assetWorld struct {
	*env
	pool     *pgxpool.Pool
	store    *eventstore.Store
	blobs    *blobfs.Store
	blobDir  string
	handlers app.Handlers
	editor   string
}

func newAssetWorld(t *testing.T, cdnBase string, proxies ...netip.Prefix) *assetWorld {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	store := eventstore.New(pool)
	dir := t.TempDir()
	blobs, err := blobfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	dec := imaging.NewDecoder(asset.Limits{}, 0)
	ins, _ := imaging.NewInspector(dec)
	handlers := app.NewHandlers(store)
	cmds, editorial := api.FromHandlers(handlers)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := jwtkeys.NewSigner(key, testIssuer, testAudience)
	verifier, _ := jwtkeys.NewVerifier(testIssuer, testAudience, []ed25519.PublicKey{signer.PublicKey()})
	tokens, _ := api.NewConsistencyTokens(key.Seed())
	logs := &syncBuffer{}
	a := api.New(api.Config{ConsistencySecret: key.Seed(), TrustedProxies: proxies}, api.Deps{
		Commands:    cmds,
		Editorial:   editorial,
		Tokens:      verifier,
		Idempotency: postgres.NewIdempotencyStore(pool),
		Assets: &api.Assets{
			Upload:     app.NewUploadAssetHandler(store, ins, blobs, asset.Limits{}),
			Media:      blobs,
			CDNBaseURL: cdnBase,
		},
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	e := &env{app: a, key: key, signer: signer, tokens: tokens, logs: logs, fakes: newFakes()}
	w := &assetWorld{env: e, pool: pool, store: store, blobs: blobs, blobDir: dir, handlers: handlers}
	w.editor = e.token(t, "editor-1", api.RoleEditor)
	return w
}

func (w *assetWorld) program(t *testing.T) string {
	t.Helper()
	res, err := w.handlers.CreateProgram.Handle(context.Background(), app.CreateProgram{Title: "Night Shift", Category: "drama", Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// blobFiles lists the files in the blob store's directory.
func (w *assetWorld) blobFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(w.blobDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, w.blobDir))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBadUploadsStoreNothing is the list: each bad upload is a 4xx
// problem, and nothing is stored — no blob, no event.
func TestBadUploadsStoreNothing(t *testing.T) {
	t.Parallel()
	w := newAssetWorld(t, "")
	pid := w.program(t)
	before := countEvents(t, w.pool)
	viewer := w.token(t, "v", api.RoleViewer)
	jpg := imagingtest.JPEG(t, 300, 200)
	tests := []struct {
		name   string
		r      req
		status int
		kind   string
	}{
		{"text renamed .jpg", uploadReq(t, w.editor, nil, field("kind", "poster"), field("program_id", pid), file(imagingtest.Text(), "poster.jpg", "image/jpeg")), 415, "unsupported-image"},
		{"truncated png", uploadReq(t, w.editor, nil, field("kind", "poster"), field("program_id", pid), file(imagingtest.TruncatedPNG(t), "poster.png", "image/png")), 422, "corrupt-image"},
		{"50,000 × 50,000 header", uploadReq(t, w.editor, nil, field("kind", "poster"), field("program_id", pid), file(imagingtest.BombPNG(50_000, 50_000), "bomb.png", "image/png")), 422, "image-too-large"},
		{"wrong role", uploadReq(t, viewer, nil, field("kind", "poster"), field("program_id", pid), file(jpg, "p.jpg", "image/jpeg")), 403, "forbidden"},
		{"unknown program", uploadReq(t, w.editor, nil, field("kind", "poster"), field("program_id", "0190f1f4-0000-7000-8000-00000000dead"), file(jpg, "p.jpg", "image/jpeg")), 404, "not-found"},
		{"unknown episode", uploadReq(t, w.editor, nil, field("kind", "poster"), field("episode_id", "0190f1f4-0000-7000-8000-00000000dead"), file(jpg, "p.jpg", "image/jpeg")), 404, "not-found"},
		{"unknown kind", uploadReq(t, w.editor, nil, field("kind", "cover"), field("program_id", pid), file(jpg, "p.jpg", "image/jpeg")), 400, "validation"},
		{"both targets", uploadReq(t, w.editor, nil, field("kind", "poster"), field("program_id", pid), field("episode_id", pid), file(jpg, "p.jpg", "image/jpeg")), 400, "validation"},
	}
	for _, tc := range tests {
		res := w.do(t, tc.r)
		p := res.problem(t, tc.status)
		if !strings.HasSuffix(p.Type, ":"+tc.kind) {
			t.Errorf("%s: problem %+v, want %s", tc.name, p, tc.kind)
		}
	}
	if files := w.blobFiles(t); len(files) != 0 {
		t.Fatalf("bad uploads stored blobs: %v", files)
	}
	if after := countEvents(t, w.pool); after != before {
		t.Fatalf("bad uploads appended %d events", after-before)
	}
	// The bomb was refused by its header, and the text's problem says what it is.
	res := w.do(t, uploadReq(t, w.editor, nil, field("kind", "poster"), field("program_id", pid), file(imagingtest.Text(), "poster.jpg", "image/jpeg")))
	if p := res.problem(t, 415); !strings.Contains(p.Detail, "text/plain") {
		t.Fatalf("detail %q does not say what the file is", p.Detail)
	}
}

// TestUploadThenServe goes from the HTTP upload through the processor to delivery:
// absolute URLs, the original and the renditions served with their cache headers,
// ETag and 304, byte ranges, and a replacement keeping the rendition URLs.
func TestUploadThenServe(t *testing.T) {
	t.Parallel()
	w := newAssetWorld(t, "")
	pid := w.program(t)
	original := imagingtest.JPEG(t, 600, 900)
	sum := sha256.Sum256(original)
	res := w.do(t, uploadReq(t, w.editor, nil,
		field("kind", "poster"), field("program_id", pid), file(original, "whatever.gif", "text/plain")))
	body := checkAssetWrite(t, w.env, res, http.StatusCreated)
	id := body["id"].(string)
	urls := body["urls"].(map[string]any)
	want := map[string]string{
		"original": "http://example.com/media/originals/" + hex.EncodeToString(sum[:]) + ".jpg",
		"small":    "http://example.com/media/assets/" + id + "/small.jpg",
		"medium":   "http://example.com/media/assets/" + id + "/medium.jpg",
		"large":    "http://example.com/media/assets/" + id + "/large.jpg",
	}
	for k, v := range want {
		if urls[k] != v {
			t.Errorf("urls.%s = %v, want %s", k, urls[k], v)
		}
	}
	path := func(u string) string { return strings.TrimPrefix(u, "http://example.com") }

	// Before processing, a rendition is 404 and not cacheable.
	r := w.do(t, req{method: "GET", path: path(want["small"])})
	r.problem(t, 404)
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("404 Cache-Control %q", cc)
	}

	// The original: immutable, strong ETag = its SHA-256, 304, ranges.
	r = w.do(t, req{method: "GET", path: path(want["original"])})
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	if r.status != 200 || !bytes.Equal(r.body, original) || r.header.Get("Content-Type") != "image/jpeg" ||
		r.header.Get("Cache-Control") != "public, max-age=31536000, immutable" || r.header.Get("ETag") != etag ||
		r.header.Get("Accept-Ranges") != "bytes" || r.header.Get("Last-Modified") == "" {
		t.Fatalf("original: %d %v (%d bytes)", r.status, r.header, len(r.body))
	}
	for _, inm := range []string{etag, `W/` + etag, `"other", ` + etag, "*"} {
		r = w.do(t, req{method: "GET", path: path(want["original"]), headers: map[string]string{"If-None-Match": inm}})
		if r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != etag {
			t.Fatalf("If-None-Match %s: %d, %d bytes", inm, r.status, len(r.body))
		}
	}
	if r = w.do(t, req{method: "GET", path: path(want["original"]), headers: map[string]string{"If-None-Match": `"other"`}}); r.status != 200 {
		t.Fatalf("stale If-None-Match: %d", r.status)
	}
	n := int64(len(original))
	ranges := []struct {
		header       string
		status       int
		from, to     int64
		contentRange string
	}{
		{"bytes=0-99", 206, 0, 99, fmt.Sprintf("bytes 0-99/%d", n)},
		{"bytes=100-", 206, 100, n - 1, fmt.Sprintf("bytes 100-%d/%d", n-1, n)},
		{"bytes=-10", 206, n - 10, n - 1, fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n)},
		{fmt.Sprintf("bytes=5-%d", n+1000), 206, 5, n - 1, fmt.Sprintf("bytes 5-%d/%d", n-1, n)},
		{fmt.Sprintf("bytes=%d-", n), 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
		{"bytes=9-3", 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
		{"bytes=0-1,5-6", 200, 0, n - 1, ""},
		{"items=0-1", 200, 0, n - 1, ""},
	}
	for _, rg := range ranges {
		r = w.do(t, req{method: "GET", path: path(want["original"]), headers: map[string]string{"Range": rg.header}})
		if r.status != rg.status || r.header.Get("Content-Range") != rg.contentRange {
			t.Fatalf("Range %s: %d %q, want %d %q", rg.header, r.status, r.header.Get("Content-Range"), rg.status, rg.contentRange)
		}
		if rg.status != 416 && !bytes.Equal(r.body, original[rg.from:rg.to+1]) {
			t.Fatalf("Range %s: wrong bytes", rg.header)
		}
	}
	if r = w.do(t, req{method: "GET", path: path(want["original"]), headers: map[string]string{"Range": "bytes=0-9", "If-Range": `"old"`}}); r.status != 200 || len(r.body) != len(original) {
		t.Fatalf("If-Range mismatch: %d", r.status)
	}
	if r = w.do(t, req{method: "GET", path: path(want["original"]), headers: map[string]string{"Range": "bytes=0-9", "If-Range": etag}}); r.status != 206 || len(r.body) != 10 {
		t.Fatalf("If-Range match: %d", r.status)
	}
	if r = w.do(t, req{method: "HEAD", path: path(want["original"])}); r.status != 200 || len(r.body) != 0 || r.header.Get("ETag") != etag ||
		r.header.Get("Content-Length") != fmt.Sprint(len(original)) || r.header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("HEAD: %d %d bytes %v", r.status, len(r.body), r.header)
	}
	for _, p := range []string{"/media/originals/" + strings.Repeat("g", 64) + ".jpg", "/media/originals/..%2F..%2Fetc%2Fpasswd", "/media/assets/" + id + "/huge.jpg", "/media/assets/not-a-uuid/small.jpg"} {
		w.do(t, req{method: "GET", path: p}).problem(t, 404)
	}

	// Process it, then the renditions are served for 30 days.
	w.process(t)
	r = w.do(t, req{method: "GET", path: path(want["large"])})
	if r.status != 200 || r.header.Get("Cache-Control") != "public, max-age=2592000" || r.header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("large: %d %v", r.status, r.header)
	}
	img, err := jpeg.Decode(bytes.NewReader(r.body))
	if err != nil || img.Bounds().Dx() != 600 || img.Bounds().Dy() != 900 {
		t.Fatalf("large is %v (%v), want the 600×900 original's size (never upscaled)", img.Bounds(), err)
	}
	webp := w.do(t, req{method: "GET", path: strings.TrimSuffix(path(want["small"]), ".jpg") + ".webp"})
	if webp.status != 200 || webp.header.Get("Content-Type") != "image/webp" {
		t.Fatalf("small.webp: %d %v", webp.status, webp.header)
	}
	oldETag := r.header.Get("ETag")

	// A replacement keeps the asset and its rendition URLs; their content changes.
	res = w.do(t, uploadReq(t, w.editor, nil,
		field("kind", "poster"), field("program_id", pid), file(imagingtest.PNG(t, 300, 100, nil), "new.png", "")))
	body2 := checkAssetWrite(t, w.env, res, http.StatusCreated)
	if body2["id"] != id || body2["version"] != 3.0 || body2["urls"].(map[string]any)["large"] != want["large"] {
		t.Fatalf("replacement %v", body2)
	}
	w.process(t)
	r = w.do(t, req{method: "GET", path: path(want["large"]), headers: map[string]string{"If-None-Match": oldETag}})
	if r.status != 200 || r.header.Get("ETag") == oldETag {
		t.Fatalf("after the replacement the old ETag still matches: %d", r.status)
	}
}

// process runs the thumbnail processor until every upload has its result.
func (w *assetWorld) process(t *testing.T) {
	t.Helper()
	dec := imaging.NewDecoder(asset.Limits{}, 0)
	renderer, _ := imaging.NewRenderer(dec, imaging.RenderOptions{})
	p, err := thumbnails.New(w.pool, thumbnails.Deps{Log: w.store, Streams: w.store, Blobs: w.blobs, Renderer: renderer,
		Recorder: app.NewRecordAssetProcessedHandler(w.store)}, thumbnails.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Every upload has its result once the processor has caught up (no upload here
	// is superseded before it is processed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var uploads, results int
		err := w.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE type = $1), count(*) FILTER (WHERE type = $2) FROM eventstore_events`,
			events.TypeAssetUploaded, events.TypeAssetProcessed).Scan(&uploads, &results)
		if err != nil {
			t.Fatal(err)
		}
		if uploads == results {
			if st, err := p.Status(ctx); err != nil || st.DeadLetters != 0 {
				t.Fatalf("processor status %+v %v", st, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processor stuck: %d uploads, %d results", uploads, results)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUploadURLsAndIdempotency(t *testing.T) {
	t.Parallel()
	proxy := netip.MustParsePrefix("0.0.0.0/0") // httptest requests come from 0.0.0.0
	w := newAssetWorld(t, "https://cdn.example.com/", proxy)
	pid := w.program(t)
	jpg := imagingtest.JPEG(t, 64, 96)
	key := map[string]string{"Idempotency-Key": "upload-1"}
	first := w.do(t, uploadReq(t, w.editor, key, field("kind", "backdrop"), field("program_id", pid), file(jpg, "a.jpg", "")))
	b := checkAssetWrite(t, w.env, first, http.StatusCreated)
	if u := b["urls"].(map[string]any)["small"]; u != "https://cdn.example.com/media/assets/"+b["id"].(string)+"/small.jpg" {
		t.Fatalf("CDN url %v", u)
	}
	// The same request again, with another boundary and file name: the first answer.
	again := w.do(t, uploadReq(t, w.editor, key, field("program_id", pid), file(jpg, "b.jpg", "image/jpeg"), field("kind", "backdrop")))
	if again.status != http.StatusCreated || !bytes.Equal(again.body, first.body) || again.header.Get(api.HeaderIdempotentReplayed) != "true" {
		t.Fatalf("replay: %d %s %v", again.status, again.body, again.header)
	}
	// Another file under the key: 409.
	other := w.do(t, uploadReq(t, w.editor, key, field("kind", "backdrop"), field("program_id", pid), file(imagingtest.JPEG(t, 64, 97), "c.jpg", "")))
	other.problem(t, http.StatusConflict)
	var uploads int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM eventstore_events WHERE type = $1`, events.TypeAssetUploaded).Scan(&uploads); err != nil || uploads != 1 {
		t.Fatalf("%d uploads stored (%v), want 1", uploads, err)
	}
	// The same image without a key changes nothing: 200, same version.
	same := w.do(t, uploadReq(t, w.editor, nil, field("kind", "backdrop"), field("program_id", pid), file(jpg, "a.jpg", "")))
	sb := checkAssetWrite(t, w.env, same, http.StatusOK)
	if sb["version"] != b["version"] || sb["id"] != b["id"] {
		t.Fatalf("same image: %v after %v", sb, b)
	}
}

func TestUploadURLsFromTrustedProxyOnly(t *testing.T) {
	t.Parallel()
	fwd := map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.com"}
	for _, tc := range []struct {
		name    string
		proxies []netip.Prefix
		want    string
	}{
		{"untrusted peer", nil, "http://example.com/media/"},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}, "https://www.example.com/media/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newAssetWorld(t, "", tc.proxies...)
			pid := w.program(t)
			res := w.do(t, uploadReq(t, w.editor, fwd, field("kind", "poster"), field("program_id", pid), file(imagingtest.JPEG(t, 20, 20), "a.jpg", "")))
			b := checkAssetWrite(t, w.env, res, http.StatusCreated)
			if u := b["urls"].(map[string]any)["original"].(string); !strings.HasPrefix(u, tc.want) {
				t.Fatalf("url %s, want prefix %s", u, tc.want)
			}
		})
	}
}

// TestMediaServesCurrentBytes: the ETag always belongs to the bytes sent, also when
// the object under a key is replaced between requests.
func TestMediaServesCurrentBytes(t *testing.T) {
	t.Parallel()
	w := newAssetWorld(t, "")
	ctx := context.Background()
	key := "assets/0190f1f4-0000-7000-8000-0000000000a1/small.jpg"
	for i, data := range [][]byte{[]byte("first rendition"), []byte("second, longer rendition")} {
		if err := w.blobs.Put(ctx, key, data, "image/jpeg"); err != nil {
			t.Fatal(err)
		}
		r := w.do(t, req{method: "GET", path: "/media/" + key})
		sum := sha256.Sum256(data)
		if r.status != 200 || !bytes.Equal(r.body, data) || r.header.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Fatalf("version %d: %d %q %s", i, r.status, r.body, r.header.Get("ETag"))
		}
	}
}
