package meili_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/mediamesh/mediamesh/infra/search/meili"
	"github.com/mediamesh/mediamesh/infra/search/searchtest"
	"github.com/mediamesh/mediamesh/projections/search"
)

// TestConformance runs the search port's conformance suite against a real
// Meilisearch server. It is the one test of the project allowed to skip: there is
// no Meilisearch on the development machines.
func TestConformance(t *testing.T) {
	url := os.Getenv("MEDIAMESH_TEST_MEILI_URL")
	if url == "" {
		t.Skip("no Meilisearch server: run `meilisearch --master-key devkey` (v1.x) and set " +
			"MEDIAMESH_TEST_MEILI_URL=http://127.0.0.1:7700 and MEDIAMESH_TEST_MEILI_KEY=devkey")
	}
	client, err := meilisearch.Connect(url, meilisearch.WithAPIKey(os.Getenv("MEDIAMESH_TEST_MEILI_KEY")))
	if err != nil {
		t.Fatalf("Meilisearch at %s: %v", url, err)
	}
	idx, err := meili.New(client)
	if err != nil {
		t.Fatal(err)
	}
	searchtest.Run(t, idx)
}

func TestNewRejectsNilClient(t *testing.T) {
	t.Parallel()
	if _, err := meili.New(nil); err == nil {
		t.Fatal("New(nil) succeeded, want an error")
	}
}

// fakeMeili answers the few endpoints the write path uses, from a map of stored
// documents, and records the documents written: enough to check the version
// guard's read-then-write logic without a server.
type fakeMeili struct {
	mu      sync.Mutex
	stored  map[string]map[string]any
	written [][]map[string]any
}

func (f *fakeMeili) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/documents/fetch"):
		var q struct {
			Filter string `json:"filter"`
		}
		_ = json.Unmarshal(body, &q)
		var res []map[string]any
		for id, d := range f.stored {
			if strings.Contains(q.Filter, `"`+id+`"`) {
				res = append(res, map[string]any{"id": id, "version": d["version"]})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"results": res, "limit": 500, "offset": 0, "total": len(res)})
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/documents"):
		var docs []map[string]any
		_ = json.Unmarshal(body, &docs)
		f.written = append(f.written, docs)
		for _, d := range docs {
			f.stored[d["id"].(string)] = d
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"taskUid": 1, "status": "enqueued", "type": "documentAdditionOrUpdate"}`))
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/tasks/"):
		_, _ = w.Write([]byte(`{"uid": 1, "status": "succeeded", "type": "documentAdditionOrUpdate"}`))
	default:
		http.Error(w, `{"message": "unexpected", "code": "bad_request"}`, http.StatusBadRequest)
	}
}

func TestVersionGuardWithoutServer(t *testing.T) {
	t.Parallel()
	fake := &fakeMeili{stored: map[string]map[string]any{
		"a": {"id": "a", "version": 5.0},
		"b": {"id": "b", "version": 2.0},
	}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	idx, err := meili.New(meilisearch.New(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	published := time.Date(2024, 5, 1, 10, 0, 0, 123456000, time.UTC)
	err = idx.Upsert(ctx, "programs_v1", []search.Document{
		{ID: "a", Title: "Older", Version: 4},
		{ID: "b", Title: "Newer", Version: 3, PublishedAt: published},
		{ID: "c", Title: "New", Version: 1},
		{ID: "b", Title: "Stale duplicate", Version: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fake.written) != 1 {
		t.Fatalf("%d writes, want 1", len(fake.written))
	}
	got := map[string]map[string]any{}
	for _, d := range fake.written[0] {
		got[d["id"].(string)] = d
	}
	if len(got) != 2 || got["b"]["title"] != "Newer" || got["c"]["title"] != "New" {
		t.Fatalf("written %v, want b (newer) and c (new) only", fake.written[0])
	}
	if got["b"]["published_at"] != float64(published.UnixMicro()) || got["b"]["deleted"] != false {
		t.Fatalf("document b = %v", got["b"])
	}
	// A tombstone at or below the stored version writes nothing; above it, a
	// tombstone document.
	if err := idx.Delete(ctx, "programs_v1", []search.Tombstone{{ID: "a", Version: 5}, {ID: "c", Version: 2}}); err != nil {
		t.Fatal(err)
	}
	if len(fake.written) != 2 || len(fake.written[1]) != 1 || fake.written[1][0]["id"] != "c" || fake.written[1][0]["deleted"] != true {
		t.Fatalf("tombstones written %v, want one for c", fake.written[1:])
	}
	// Ids Meilisearch would reject fail before any request.
	if err := idx.Upsert(ctx, "programs_v1", []search.Document{{ID: "a b", Version: 9}}); err == nil {
		t.Fatal("upsert of id \"a b\" succeeded")
	}
}
