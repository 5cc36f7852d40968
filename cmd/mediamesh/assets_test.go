package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// testPNG is a w × h PNG whose pixels depend on seed, so two seeds are two images.
func testPNG(t *testing.T, w, h int, seed uint8) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 255 / w), G: uint8(y * 255 / h), B: seed, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// uploadResponse is the body of POST /v1/assets.
type uploadResponse struct {
	ID       string `json:"id"`
	Version  int64  `json:"version"`
	Position int64  `json:"position"`
	URLs     struct {
		Original, Small, Medium, Large string
	} `json:"urls"`
}

// upload posts file as the kind artwork of program, as curl -F does, and returns
// the status and the decoded body.
func upload(t *testing.T, base, token, kind, programID string, file []byte) (int, uploadResponse, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "poster.png")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	mw.WriteField("kind", kind)
	mw.WriteField("program_id", programID)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", base+"/v1/assets", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/assets: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out uploadResponse
	if resp.StatusCode < 300 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("upload response %s: %v", b, err)
		}
	}
	return resp.StatusCode, out, b
}

// waitProcessed waits (bounded) until the asset's stream holds n AssetProcessed
// events and returns them, oldest first.
func waitProcessed(t *testing.T, pool *pgxpool.Pool, assetID string, n int, logs *logWatcher) []events.AssetProcessed {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, err := pool.Query(context.Background(), `SELECT data FROM eventstore_events WHERE stream_id = $1 AND type = $2 ORDER BY version`,
			events.AssetStreamID(assetID), events.TypeAssetProcessed)
		if err != nil {
			t.Fatal(err)
		}
		var got []events.AssetProcessed
		for rows.Next() {
			var data []byte
			var ev events.AssetProcessed
			if err := rows.Scan(&data); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &ev); err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("asset %s: %d AssetProcessed within 60 s, want %d\n%s", assetID, len(got), n, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches u with the given request headers.
func get(t *testing.T, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// purgeRecorder is a CDN purge webhook that records what it was sent.
type purgeRecorder struct {
	mu   sync.Mutex
	reqs []purgeRequest
}

type purgeRequest struct {
	auth string
	urls []string
}

func (p *purgeRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		URLs []string `json:"urls"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Method != "POST" {
		http.Error(w, "bad purge request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, purgeRequest{auth: r.Header.Get("Authorization"), urls: body.URLs})
	p.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (p *purgeRecorder) requests() []purgeRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

// TestServeAssets runs the composition root with the filesystem blob store (and
// once with S3, on an in-process S3-compatible server whose bucket the start
// creates): an editor uploads a generated PNG as a program's poster; under --role
// all the thumbnail processor records AssetProcessed, and /media/ serves the
// original and its renditions with their cache headers. With a CDN configured the
// URLs are the CDN's, and replacing the image calls the purge webhook with the
// bearer token. A blob store that goes away makes /health/ready a 503 naming it.
// --role command takes uploads but serves no /media/.
func TestServeAssets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		role string
		cdn  bool
		s3   bool
	}{
		{"all", "all", false, false},
		{"all with a cdn and purge", "all", true, false},
		{"all on s3", "all", false, true},
		{"command", "command", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, dbURL := pgtest.NewDB(t)
			vars := serverVars(t, dbURL)
			const cdnBase, purgeToken = "https://cdn.example.test", "purge-token-never-logged"
			purges := &purgeRecorder{}
			if tt.cdn {
				hook := httptest.NewServer(purges)
				t.Cleanup(hook.Close)
				vars[config.KeyCDNBaseURL] = cdnBase
				vars[config.KeyCDNPurgeURL] = hook.URL + "/purge"
				vars[config.KeyCDNPurgeToken] = purgeToken
			}
			var fakeS3 *httptest.Server
			if tt.s3 {
				fakeS3 = httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
				t.Cleanup(fakeS3.Close)
				vars[config.KeyBlob] = "s3"
				vars[config.KeyS3Endpoint] = fakeS3.URL
				vars[config.KeyS3Bucket] = "mediamesh-assets"
				vars[config.KeyS3AccessKey] = "test-access"
				vars[config.KeyS3SecretKey] = "test-secret"
			}
			base, stop, logs := startServe(t, vars, "--role", tt.role)
			editor := mintToken(t, vars, "editor")

			code, _, body := call(t, "POST", base+"/v1/programs", editor, `{"title":"Posters","category":"documentary","language":"en"}`)
			if code != http.StatusCreated {
				t.Fatalf("POST /v1/programs: %d %s", code, body)
			}
			var program struct{ ID string }
			if err := json.Unmarshal(body, &program); err != nil {
				t.Fatal(err)
			}

			original := testPNG(t, 640, 360, 1)
			code, up, body := upload(t, base, editor, "poster", program.ID, original)
			if code != http.StatusCreated || up.ID == "" || up.Version < 1 || up.Position < 1 {
				t.Fatalf("POST /v1/assets: %d %s", code, body)
			}
			sum := sha256.Sum256(original)
			wantBase := base
			if tt.cdn {
				wantBase = cdnBase
			}
			want := map[string]string{
				"original": wantBase + "/media/" + events.AssetOriginalKey(hex.EncodeToString(sum[:]), "png"),
				"small":    wantBase + "/media/" + events.AssetRenditionKey(up.ID, events.AssetSizeSmall, events.AssetFormatJPEG),
				"large":    wantBase + "/media/" + events.AssetRenditionKey(up.ID, events.AssetSizeLarge, events.AssetFormatJPEG),
			}
			for name, got := range map[string]string{"original": up.URLs.Original, "small": up.URLs.Small, "large": up.URLs.Large} {
				if got != want[name] {
					t.Errorf("urls.%s = %q, want %q", name, got, want[name])
				}
			}
			// The server itself serves /media/; a CDN would pull from it.
			local := func(u string) string {
				p, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				return base + p.Path
			}

			if tt.role == "command" {
				if resp, b := get(t, local(up.URLs.Original), nil); resp.StatusCode != http.StatusNotFound {
					t.Errorf("--role command serves /media/: %d %s", resp.StatusCode, b)
				}
				if stop() != 0 {
					t.Errorf("serve did not stop cleanly:\n%s", logs.String())
				}
				return
			}

			processed := waitProcessed(t, pool, up.ID, 1, logs)
			if p := processed[0]; p.UploadVersion != up.Version || p.SHA256 != hex.EncodeToString(sum[:]) || len(p.Renditions) != 6 || len(p.PurgedURLs) != 0 {
				t.Errorf("AssetProcessed %+v", p)
			}

			resp, b := get(t, local(up.URLs.Original), nil)
			tag := `"` + hex.EncodeToString(sum[:]) + `"`
			if resp.StatusCode != http.StatusOK || !bytes.Equal(b, original) || resp.Header.Get("Content-Type") != "image/png" ||
				resp.Header.Get("Cache-Control") != api.CacheControlOriginal || resp.Header.Get("ETag") != tag {
				t.Errorf("GET original: %d, %d bytes, headers %v", resp.StatusCode, len(b), resp.Header)
			}
			if resp, _ := get(t, local(up.URLs.Original), map[string]string{"If-None-Match": tag}); resp.StatusCode != http.StatusNotModified {
				t.Errorf("GET original with If-None-Match: %d", resp.StatusCode)
			}
			for _, r := range []struct {
				url   string
				width int
			}{{up.URLs.Small, 160}, {up.URLs.Medium, 480}, {up.URLs.Large, 640}} { // never wider than the original
				resp, b := get(t, local(r.url), nil)
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" ||
					resp.Header.Get("Cache-Control") != api.CacheControlRendition || resp.Header.Get("ETag") == "" {
					t.Errorf("GET %s: %d, headers %v", r.url, resp.StatusCode, resp.Header)
					continue
				}
				cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
				if err != nil || cfg.Width != r.width || cfg.Height != r.width*360/640 {
					t.Errorf("GET %s: %d × %d JPEG (%v), want %d wide", r.url, cfg.Width, cfg.Height, err, r.width)
				}
			}
			if code, _, body := call(t, "GET", base+"/health/ready", "", ""); code != http.StatusOK || !strings.Contains(string(body), `"blobs":"ok"`) {
				t.Errorf("GET /health/ready: %d %s", code, body)
			}

			if tt.cdn {
				// Replacing the image rewrites the renditions under the same keys: the
				// processor purges their CDN URLs, with the configured bearer token.
				code, again, body := upload(t, base, editor, "poster", program.ID, testPNG(t, 640, 360, 2))
				if code != http.StatusCreated || again.ID != up.ID {
					t.Fatalf("replacing upload: %d %s", code, body)
				}
				processed = waitProcessed(t, pool, up.ID, 2, logs)
				if p := processed[1]; len(p.PurgedURLs) != 6 || p.PurgeError != "" {
					t.Errorf("second AssetProcessed: purged %q, error %q", p.PurgedURLs, p.PurgeError)
				}
				reqs := purges.requests()
				if len(reqs) != 1 || reqs[0].auth != "Bearer "+purgeToken || len(reqs[0].urls) != 6 || !slices.Contains(reqs[0].urls, want["small"]) {
					t.Errorf("purge webhook requests: %+v", reqs)
				}
			} else {
				// A blob store that went away makes the role unready, naming it.
				if tt.s3 {
					fakeS3.CloseClientConnections()
					fakeS3.Close()
				} else if err := os.RemoveAll(filepath.Join(vars[config.KeyDataDir], "blobs")); err != nil {
					t.Fatal(err)
				}
				if code, _, body := call(t, "GET", base+"/health/ready", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "blobs") {
					t.Errorf("GET /health/ready without the blob directory: %d %s", code, body)
				}
			}

			if code := stop(); code != 0 {
				t.Errorf("serve exit code %d after SIGTERM:\n%s", code, logs.String())
			}
			out := logs.String()
			if !strings.Contains(out, `"msg":"thumbnail processor running"`) {
				t.Errorf("log lacks the processor's start:\n%s", out)
			}
			if strings.Contains(out, purgeToken) {
				t.Error("the purge token reached the log")
			}
		})
	}
}

// TestProjectionsReplayThumbnails: an upload whose original is missing when the
// thumbnail processor gets to it is dead-lettered at once; `projections dlq list
// thumbnails` shows it, and once the original is back `projections dlq replay
// thumbnails` processes it through the processor (AssetProcessed recorded, the dead
// letter gone).
func TestProjectionsReplayThumbnails(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewDB(t)
	vars := serverVars(t, dbURL)
	ctx := context.Background()

	// --role command takes the upload and runs no processor.
	base, stop, logs := startServe(t, vars, "--role", "command")
	editor := mintToken(t, vars, "editor")
	code, _, body := call(t, "POST", base+"/v1/programs", editor, `{"title":"Missing","category":"documentary","language":"en"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/programs: %d %s", code, body)
	}
	var program struct{ ID string }
	if err := json.Unmarshal(body, &program); err != nil {
		t.Fatal(err)
	}
	original := testPNG(t, 320, 480, 3)
	code, up, body := upload(t, base, editor, "poster", program.ID, original)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/assets: %d %s", code, body)
	}
	if stop() != 0 {
		t.Fatalf("serve --role command did not stop cleanly:\n%s", logs.String())
	}

	// The processor finds no original: a permanent failure, dead-lettered at once.
	sum := sha256.Sum256(original)
	file := filepath.Join(vars[config.KeyDataDir], "blobs", filepath.FromSlash(events.AssetOriginalKey(hex.EncodeToString(sum[:]), "png")))
	if err := os.Rename(file, file+".away"); err != nil {
		t.Fatal(err)
	}
	_, stop, logs = startServe(t, vars, "--role", "all")
	deadLetters := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_dead_letters WHERE projection = 'thumbnails' AND stream_id = $1`,
			events.AssetStreamID(up.ID)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for deadLetters() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no thumbnails dead letter within 60 s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stop() != 0 {
		t.Fatalf("serve --role all did not stop cleanly:\n%s", logs.String())
	}

	te := newTestEnv(vars)
	if code := runCmd(t, te, "projections", "dlq", "list", "thumbnails"); code != 0 || !strings.Contains(te.stdout.String(), events.AssetStreamID(up.ID)) {
		t.Fatalf("projections dlq list thumbnails: exit %d\n%s%s", code, te.stdout, te.stderr)
	}
	if err := os.Rename(file+".away", file); err != nil {
		t.Fatal(err)
	}
	te = newTestEnv(vars)
	if code := runCmd(t, te, "projections", "dlq", "replay", "thumbnails"); code != 0 || !strings.Contains(te.stdout.String(), "1 dead letters replayed, 0 remain") {
		t.Fatalf("projections dlq replay thumbnails: exit %d\n%s%s", code, te.stdout, te.stderr)
	}
	processed := waitProcessed(t, pool, up.ID, 1, logs)
	if p := processed[0]; p.UploadVersion != up.Version || len(p.Renditions) != 6 {
		t.Errorf("AssetProcessed after the replay: %+v", p)
	}
	if n := deadLetters(); n != 0 {
		t.Errorf("%d dead letters left after the replay", n)
	}
}
