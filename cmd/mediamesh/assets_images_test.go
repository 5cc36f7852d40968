package main

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// imageSetJSON is one kind of the images object of discovery answers.
type imageSetJSON struct {
	Small, Medium, Large, Original string
}

// uploadFor posts file as the kind artwork of a program or an episode (owner
// "program_id" or "episode_id"), and returns the response.
func uploadFor(t *testing.T, base, token, owner, id, kind string, file []byte) uploadResponse {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "art.jpg")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	mw.WriteField("kind", kind)
	mw.WriteField(owner, id)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", base+"/v1/assets", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, b := doRequest(t, req)
	var out uploadResponse
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil {
		t.Fatalf("POST /v1/assets (%s %s): %d %s", owner, kind, resp.StatusCode, b)
	}
	return out
}

func doRequest(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, buf.Bytes()
}

// waitImages polls a discovery URL (bounded) until pick finds the wanted image set
// in its answer, and returns the last set seen.
func waitImages(t *testing.T, u string, logs *logWatcher, pick func(body []byte) (imageSetJSON, bool), want imageSetJSON) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		code, _, body := call(t, "GET", u, "", "")
		if code == http.StatusOK {
			if got, ok := pick(body); ok && got == want {
				return
			}
		}
		last = string(body)
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no images %+v within 60 s; last answer %s\n%s", u, want, last, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeAssetImages is the path from upload to discovery: under --role all an
// editor uploads a JPEG poster for a published program and a thumbnail for its
// published episode; the thumbnail processor renders them, the catalog puts them
// into the rows, and discovery answers (the program by id, its episodes, the
// episode by id, browse and search) carry absolute URLs that load as JPEGs from
// /media/. With MEDIAMESH_CDN_BASE_URL the same URLs are under the CDN.
func TestServeAssetImages(t *testing.T) {
	t.Parallel()
	for _, cdn := range []bool{false, true} {
		name := "request base"
		if cdn {
			name = "cdn base"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool, dbURL := pgtest.NewDB(t)
			vars := serverVars(t, dbURL)
			const cdnBase = "https://cdn.example.test/"
			if cdn {
				vars[config.KeyCDNBaseURL] = cdnBase
			}
			base, stop, logs := startServe(t, vars, "--role", "all")
			editor := mintToken(t, vars, "editor")
			post := func(path, body string) string {
				code, _, b := call(t, "POST", base+path, editor, body)
				var out struct{ ID string }
				if code >= 300 || json.Unmarshal(b, &out) != nil {
					t.Fatalf("POST %s: %d %s", path, code, b)
				}
				return out.ID
			}
			pid := post("/v1/programs", `{"title":"Harbour Lights","category":"documentary","language":"en"}`)
			post("/v1/programs/"+pid+"/publish", "")
			eid := post("/v1/programs/"+pid+"/episodes", `{"title":"Pilot","number":1,"duration_seconds":1800}`)
			post("/v1/episodes/"+eid+"/publish", "")

			poster := demoArtwork(3, 600, 900)
			thumb := demoArtwork(4, 640, 360)
			up := uploadFor(t, base, editor, "program_id", pid, "poster", poster)
			ut := uploadFor(t, base, editor, "episode_id", eid, "thumbnail", thumb)
			waitProcessed(t, pool, up.ID, 1, logs)
			waitProcessed(t, pool, ut.ID, 1, logs)

			urlBase := base
			if cdn {
				urlBase = strings.TrimSuffix(cdnBase, "/")
			}
			set := func(u uploadResponse) imageSetJSON {
				r := func(size string) string {
					return urlBase + "/media/" + events.AssetRenditionKey(u.ID, size, events.AssetFormatJPEG)
				}
				return imageSetJSON{r(events.AssetSizeSmall), r(events.AssetSizeMedium), r(events.AssetSizeLarge), u.URLs.Original}
			}
			wantPoster, wantThumb := set(up), set(ut)
			if !strings.HasPrefix(up.URLs.Original, urlBase+"/media/originals/") {
				t.Fatalf("upload's original URL %q", up.URLs.Original)
			}
			type withImages struct {
				Images map[string]imageSetJSON `json:"images"`
			}
			one := func(kind string) func([]byte) (imageSetJSON, bool) {
				return func(b []byte) (imageSetJSON, bool) {
					var v withImages
					if json.Unmarshal(b, &v) != nil {
						return imageSetJSON{}, false
					}
					s, ok := v.Images[kind]
					return s, ok
				}
			}
			first := func(kind string) func([]byte) (imageSetJSON, bool) {
				return func(b []byte) (imageSetJSON, bool) {
					var v struct{ Items []withImages }
					if json.Unmarshal(b, &v) != nil || len(v.Items) == 0 {
						return imageSetJSON{}, false
					}
					s, ok := v.Items[0].Images[kind]
					return s, ok
				}
			}
			waitImages(t, base+"/v1/programs/"+pid, logs, one("poster"), wantPoster)
			waitImages(t, base+"/v1/episodes/"+eid, logs, one("thumbnail"), wantThumb)
			waitImages(t, base+"/v1/programs/"+pid+"/episodes", logs, first("thumbnail"), wantThumb)
			waitImages(t, base+"/v1/programs?category=documentary", logs, first("poster"), wantPoster)
			waitImages(t, base+"/v1/search?q="+url.QueryEscape("harbour"), logs, first("poster"), wantPoster)

			// Every URL loads from this server's /media/ (a CDN would pull from it).
			for _, s := range []imageSetJSON{wantPoster, wantThumb} {
				for i, u := range []string{s.Small, s.Medium, s.Large, s.Original} {
					p, err := url.Parse(u)
					if err != nil {
						t.Fatal(err)
					}
					resp, b := get(t, base+p.Path, nil)
					if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
						t.Errorf("GET %s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
						continue
					}
					cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
					if wantW := []int{160, 480}; err != nil || (i < 2 && cfg.Width != wantW[i]) {
						t.Errorf("GET %s: %d × %d JPEG (%v)", u, cfg.Width, cfg.Height, err)
					}
				}
			}
			if code := stop(); code != 0 {
				t.Errorf("serve exit code %d:\n%s", code, logs.String())
			}
		})
	}
}
