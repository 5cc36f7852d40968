package rebuild_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// TestCatalogImagesVersioned: a rebuilt catalog version has its own artwork slot
// table (created by the Tables sink of Rebuildable, like the live one, and dropped
// with its version), and applying the same history with artwork to it gives the
// live version's rows, images included.
func TestCatalogImagesVersioned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	live := catalog.New(nil)
	def, err := rebuild.Rebuildable(pool, live, nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := def.Projection(2)
	if err != nil {
		t.Fatal(err)
	}
	hist := pt.Golden(t)[:3] // program created, episode registered and added
	codec := events.NewCodec()
	const ep = "0190d5a0-0000-7000-8000-0000000000e1"
	for i, up := range []events.AssetUploaded{
		{AssetID: "0190d5a0-0000-7000-8000-0000000000a1", ProgramID: pt.GoldenProgramID, Kind: events.AssetKindPoster, OriginalKey: "originals/a.jpg"},
		{AssetID: "0190d5a0-0000-7000-8000-0000000000a2", ProgramID: pt.GoldenProgramID, EpisodeID: ep, Kind: events.AssetKindThumbnail, OriginalKey: "originals/b.jpg"},
	} {
		for v, ev := range []events.Event{up, events.AssetProcessed{AssetID: up.AssetID, ProgramID: up.ProgramID, EpisodeID: up.EpisodeID,
			Kind: up.Kind, UploadVersion: 1, OriginalKey: up.OriginalKey, Renditions: []events.AssetRendition{
				{Size: events.AssetSizeSmall, Format: events.AssetFormatJPEG, Key: events.AssetRenditionKey(up.AssetID, events.AssetSizeSmall, events.AssetFormatJPEG)},
			}}} {
			typ, data, err := codec.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			hist = append(hist, events.Envelope{EventID: fmt.Sprintf("0190d5a0-0000-7000-9000-0000000001%d%d", i, v), Type: typ,
				StreamID: events.AssetStreamID(up.AssetID), Version: int64(v + 1), Position: int64(100+2*i+v) << 20, OccurredAt: pt.Base,
				Metadata: events.Metadata{Actor: "test"}, Data: data})
		}
	}

	for _, s := range def.Sinks {
		if err := s.Prepare(ctx, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	pt.ApplyDirect(t, pool, live, hist, 1, 4)
	pt.ApplyDirect(t, pool, next, hist, 2, 3)
	want, got := pt.Checksums(t, pool, live.Sinks()), pt.Checksums(t, pool, next.Sinks())
	if len(next.Sinks()) != 4 || next.Sinks()[3] != "catalog_images_v2" {
		t.Fatalf("version 2 sinks %v", next.Sinks())
	}
	for i, table := range live.Sinks() {
		if got[next.Sinks()[i]] != want[table] {
			t.Errorf("%s = %s, want %s's %s", next.Sinks()[i], got[next.Sinks()[i]], table, want[table])
		}
	}
	var images string
	if err := pool.QueryRow(ctx, `SELECT images::text FROM catalog_programs_v2`).Scan(&images); err != nil || images == "{}" {
		t.Fatalf("version 2 program images %q (%v)", images, err)
	}

	for _, s := range def.Sinks {
		if err := s.Drop(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	var left bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('catalog_images_v2') IS NOT NULL`).Scan(&left); err != nil || left {
		t.Fatalf("catalog_images_v2 left after Drop (%v)", err)
	}
}
