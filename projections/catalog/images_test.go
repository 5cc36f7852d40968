package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
)

// imageSet and images are the images column as stored (relative URLs).
type imageSet struct{ Small, Medium, Large, Original string }

type images map[string]imageSet

// artwork writes the events of one asset stream, counting its versions.
type artwork struct {
	assetID, programID, episodeID, kind string
	version                             int64
}

var artCodec = events.NewCodec()

func (a *artwork) envelope(ev events.Event) events.Envelope {
	typ, data, err := artCodec.Encode(ev)
	if err != nil {
		panic(err)
	}
	a.version++
	return events.Envelope{
		EventID:    fmt.Sprintf("%s-%d", a.assetID, a.version),
		Type:       typ,
		StreamID:   events.AssetStreamID(a.assetID),
		Version:    a.version,
		OccurredAt: pt.Base,
		Metadata:   events.Metadata{Actor: "test"},
		Data:       data,
	}
}

func originalKey(sha string) string { return events.AssetOriginalKey(sha, "jpg") }

func (a *artwork) uploaded(sha string) events.Envelope {
	return a.envelope(events.AssetUploaded{AssetID: a.assetID, ProgramID: a.programID, EpisodeID: a.episodeID, Kind: a.kind,
		OriginalKey: originalKey(sha), ContentType: "image/jpeg", Width: 2000, Height: 3000, Bytes: 1000, SHA256: sha})
}

// processed records renditions of the upload at uploadVersion: every size as JPEG
// and WebP.
func (a *artwork) processed(uploadVersion int64, sha string) events.Envelope {
	var rs []events.AssetRendition
	for _, size := range []string{events.AssetSizeSmall, events.AssetSizeMedium, events.AssetSizeLarge} {
		for _, format := range []string{events.AssetFormatWebP, events.AssetFormatJPEG} {
			rs = append(rs, events.AssetRendition{Size: size, Format: format, Key: events.AssetRenditionKey(a.assetID, size, format),
				ContentType: "image/" + format, Width: 100, Height: 150, Bytes: 10})
		}
	}
	return a.envelope(events.AssetProcessed{AssetID: a.assetID, ProgramID: a.programID, EpisodeID: a.episodeID, Kind: a.kind,
		UploadVersion: uploadVersion, SHA256: sha, OriginalKey: originalKey(sha), Renditions: rs})
}

// uploadedSet is what an upload shows: the original in every size.
func uploadedSet(sha string) imageSet {
	o := "/media/" + originalKey(sha)
	return imageSet{o, o, o, o}
}

// processedSet is what the renditions of an asset show: the JPEG sizes.
func processedSet(assetID, sha string) imageSet {
	r := func(size string) string {
		return "/media/" + events.AssetRenditionKey(assetID, size, events.AssetFormatJPEG)
	}
	return imageSet{r(events.AssetSizeSmall), r(events.AssetSizeMedium), r(events.AssetSizeLarge), "/media/" + originalKey(sha)}
}

// loadImages reads the images column of table by row id.
func loadImages(t *testing.T, pool *pgxpool.Pool, table string) map[string]images {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text, images::text FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]images{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			t.Fatal(err)
		}
		var im images
		if err := json.Unmarshal([]byte(raw), &im); err != nil {
			t.Fatalf("images of %s: %s: %v", id, raw, err)
		}
		out[id] = im
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// positioned returns evs with ascending positions, in the order given.
func positioned(evs ...events.Envelope) []events.Envelope {
	out := slices.Clone(evs)
	for i := range out {
		out[i].Position = int64(i+1) << 20
	}
	return out
}

// TestImages: asset events fill the images of programs and episodes, from the
// upload's original at once to the JPEG renditions of the current upload.
func TestImages(t *testing.T) {
	t.Parallel()
	golden := pt.Golden(t)
	const (
		prog  = pt.GoldenProgramID
		ep    = "0190d5a0-0000-7000-8000-0000000000e1"
		shaA  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		shaB  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		posA  = "0190d5a0-0000-7000-8000-0000000000a1"
		backA = "0190d5a0-0000-7000-8000-0000000000a2"
		epA   = "0190d5a0-0000-7000-8000-0000000000a3"
	)
	rows := golden[:3] // created, episode registered, episode added
	poster := func() *artwork { return &artwork{assetID: posA, programID: prog, kind: events.AssetKindPoster} }
	tests := []struct {
		name             string
		evs              func() []events.Envelope
		program, episode images
	}{
		{"upload shows the original in every size", func() []events.Envelope {
			a := poster()
			return append(slices.Clone(rows), a.uploaded(shaA))
		}, images{"poster": uploadedSet(shaA)}, images{}},
		{"processed shows the jpeg renditions", func() []events.Envelope {
			a := poster()
			return append(slices.Clone(rows), a.uploaded(shaA), a.processed(1, shaA))
		}, images{"poster": processedSet(posA, shaA)}, images{}},
		{"stale processed is ignored", func() []events.Envelope {
			a := poster()
			return append(slices.Clone(rows), a.uploaded(shaA), a.uploaded(shaB), a.processed(1, shaA))
		}, images{"poster": uploadedSet(shaB)}, images{}},
		{"replacement upload shows the new original until processed", func() []events.Envelope {
			a := poster()
			return append(slices.Clone(rows), a.uploaded(shaA), a.processed(1, shaA), a.uploaded(shaB))
		}, images{"poster": uploadedSet(shaB)}, images{}},
		{"replacement processed", func() []events.Envelope {
			a := poster()
			return append(slices.Clone(rows), a.uploaded(shaA), a.processed(1, shaA), a.uploaded(shaB), a.processed(3, shaB))
		}, images{"poster": processedSet(posA, shaB)}, images{}},
		{"two kinds of a program and an episode's own artwork", func() []events.Envelope {
			a, b := poster(), &artwork{assetID: backA, programID: prog, kind: events.AssetKindBackdrop}
			e := &artwork{assetID: epA, programID: prog, episodeID: ep, kind: events.AssetKindThumbnail}
			return append(slices.Clone(rows), a.uploaded(shaA), b.uploaded(shaB), e.uploaded(shaB), b.processed(1, shaB), e.processed(1, shaB))
		}, images{"poster": uploadedSet(shaA), "backdrop": processedSet(backA, shaB)}, images{"thumbnail": processedSet(epA, shaB)}},
		{"artwork before its rows is applied when they appear", func() []events.Envelope {
			a := poster()
			e := &artwork{assetID: epA, programID: prog, episodeID: ep, kind: events.AssetKindPoster}
			return append([]events.Envelope{a.uploaded(shaA), e.uploaded(shaB), a.processed(1, shaA)}, rows...)
		}, images{"poster": processedSet(posA, shaA)}, images{"poster": uploadedSet(shaB)}},
	}
	// The golden asset events: the episode's poster, uploaded twice with the same
	// image and processed (a small JPEG rendition only) for the second upload.
	const goldenAsset = "0190d5a0-0000-7000-8000-0000000000a1"
	goldenOrig := "/media/originals/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.jpg"
	tests = append(tests, struct {
		name             string
		evs              func() []events.Envelope
		program, episode images
	}{"golden asset events", func() []events.Envelope { return append(slices.Clone(golden), pt.GoldenAssets(t)...) }, images{},
		images{"poster": {Small: "/media/" + events.AssetRenditionKey(goldenAsset, events.AssetSizeSmall, events.AssetFormatJPEG),
			Medium: goldenOrig, Large: goldenOrig, Original: goldenOrig}}})
	pool, _ := pgtest.NewDB(t)
	proj := catalog.New(nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hist := positioned(tc.evs()...)
			var want map[string]string
			// Once, in batches of every size, twice, and redelivered: the same rows.
			for i, feed := range [][]events.Envelope{hist, hist, append(slices.Clone(hist), hist...), pt.Redeliver(5, hist)} {
				pt.Truncate(t, pool, proj.Sinks())
				maxBatch := 50
				if i == 1 {
					maxBatch = 1
				}
				pt.ApplyDirect(t, pool, proj, feed, uint64(i), maxBatch)
				if got := loadImages(t, pool, catalog.ProgramsTable)[prog]; !reflect.DeepEqual(got, tc.program) {
					t.Errorf("feed %d: program images\n got %v\nwant %v", i, got, tc.program)
				}
				if got := loadImages(t, pool, catalog.EpisodesTable)[ep]; !reflect.DeepEqual(got, tc.episode) {
					t.Errorf("feed %d: episode images\n got %v\nwant %v", i, got, tc.episode)
				}
				sums := pt.Checksums(t, pool, proj.Sinks())
				if i == 0 {
					want = sums
				} else if !reflect.DeepEqual(sums, want) {
					t.Errorf("feed %d: sinks differ from a single delivery\n got %v\nwant %v", i, sums, want)
				}
			}
			// The program rows' own columns are the program stream's alone.
			pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
		})
	}
}

// TestImagesOutbox: with documents, a batch that changes images records the
// program (program artwork) or the episode (episode artwork) in the outbox, and a
// redelivered asset event records nothing.
func TestImagesOutbox(t *testing.T) {
	t.Parallel()
	golden := pt.Golden(t)
	const ep = "0190d5a0-0000-7000-8000-0000000000e1"
	pool, _ := pgtest.NewDB(t)
	proj := catalog.New(nil, catalog.WithDocuments())
	ctx := context.Background()
	a := &artwork{assetID: "0190d5a0-0000-7000-8000-0000000000a1", programID: pt.GoldenProgramID, kind: events.AssetKindPoster}
	e := &artwork{assetID: "0190d5a0-0000-7000-8000-0000000000a2", programID: pt.GoldenProgramID, episodeID: ep, kind: events.AssetKindPoster}
	hist := positioned(append(golden[:3:3], a.uploaded("aa"), e.uploaded("bb"))...)
	outbox := func() [][2]string {
		rows, err := pool.Query(ctx, `SELECT program_id::text, COALESCE(episode_id::text, '') FROM `+catalog.OutboxTable+` ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][2]string
		for rows.Next() {
			var p, e string
			if err := rows.Scan(&p, &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, [2]string{p, e})
		}
		return out
	}
	pt.ApplyDirect(t, pool, proj, hist[:3], 1, 3)
	if _, err := pool.Exec(ctx, `DELETE FROM `+catalog.OutboxTable); err != nil {
		t.Fatal(err)
	}
	pt.ApplyDirect(t, pool, proj, hist[3:4], 1, 1)
	if got, want := outbox(), [][2]string{{pt.GoldenProgramID, ""}}; !reflect.DeepEqual(got, want) {
		t.Errorf("outbox after the program's poster = %v, want %v", got, want)
	}
	pt.ApplyDirect(t, pool, proj, hist[4:5], 1, 1)
	if got, want := outbox(), [][2]string{{pt.GoldenProgramID, ""}, {pt.GoldenProgramID, ""}, {pt.GoldenProgramID, ep}}; !reflect.DeepEqual(got, want) {
		t.Errorf("outbox after the episode's poster = %v, want %v", got, want)
	}
	pt.ApplyDirect(t, pool, proj, hist[3:], 1, 2)
	if got := len(outbox()); got != 3 {
		t.Errorf("redelivered asset events added %d outbox entries", got-3)
	}
}

// withArtwork returns hist (program streams) with artwork events merged in after
// their owners' creation: uploads, replacements, processed events of current and
// replaced uploads, for programs and episodes. It also returns the images a plain
// fold of the result gives, by owner id.
func withArtwork(seed uint64, hist []events.Envelope) ([]events.Envelope, map[string]images) {
	rng := rand.New(rand.NewPCG(seed, 11))
	codec := events.NewCodec()
	type stream struct {
		evs []events.Envelope
	}
	var pending []*stream
	n := 0
	kinds := []string{events.AssetKindPoster, events.AssetKindThumbnail, events.AssetKindBackdrop}
	newStream := func(programID, episodeID string) *stream {
		n++
		a := &artwork{assetID: fmt.Sprintf("0190d5a2-0000-7000-8000-%012x", n), programID: programID, episodeID: episodeID,
			kind: kinds[rng.IntN(len(kinds))]}
		s := &stream{}
		sha := func() string { return fmt.Sprintf("%064x", rng.Uint64()) }
		first := sha()
		s.evs = append(s.evs, a.uploaded(first))
		uploads := []struct {
			v   int64
			sha string
		}{{1, first}}
		for steps := rng.IntN(5); steps > 0; steps-- {
			if rng.IntN(2) == 0 {
				u := sha()
				s.evs = append(s.evs, a.uploaded(u))
				uploads = append(uploads, struct {
					v   int64
					sha string
				}{a.version, u})
			} else {
				u := uploads[rng.IntN(len(uploads))] // now and then a replaced one's
				s.evs = append(s.evs, a.processed(u.v, u.sha))
			}
		}
		return s
	}
	var out []events.Envelope
	for _, env := range hist {
		out = append(out, env)
		ev, err := codec.DecodeEnvelope(env)
		if err != nil {
			panic(err)
		}
		switch e := ev.(type) {
		case events.ProgramCreated:
			if rng.IntN(3) > 0 {
				pending = append(pending, newStream(e.ProgramID, ""))
			}
		case events.EpisodeAdded:
			if rng.IntN(3) == 0 {
				pending = append(pending, newStream(e.ProgramID, e.EpisodeID))
			}
		}
		for len(pending) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(pending))
			s := pending[i]
			out = append(out, s.evs[0])
			if s.evs = s.evs[1:]; len(s.evs) == 0 {
				pending = slices.Delete(pending, i, i+1)
			}
		}
	}
	for _, s := range pending {
		out = append(out, s.evs...)
	}
	out = positioned(out...)
	return out, foldImages(out)
}

// foldImages is the reference fold of the artwork: per slot, the current upload's
// original, or its renditions once processed.
func foldImages(hist []events.Envelope) map[string]images {
	codec := events.NewCodec()
	type slot struct {
		upload int64
		set    imageSet
	}
	slots := map[[2]string]*slot{}
	for _, env := range hist {
		ev, _ := codec.DecodeEnvelope(env)
		switch e := ev.(type) {
		case events.AssetUploaded:
			owner := e.ProgramID
			if e.EpisodeID != "" {
				owner = e.EpisodeID
			}
			slots[[2]string{owner, e.Kind}] = &slot{env.Version, uploadedSet(e.SHA256)}
		case events.AssetProcessed:
			owner := e.ProgramID
			if e.EpisodeID != "" {
				owner = e.EpisodeID
			}
			if s := slots[[2]string{owner, e.Kind}]; s.upload == e.UploadVersion {
				s.set = processedSet(e.AssetID, e.SHA256)
			}
		}
	}
	out := map[string]images{}
	for k, s := range slots {
		if out[k[0]] == nil {
			out[k[0]] = images{}
		}
		out[k[0]][k[1]] = s.set
	}
	return out
}

// TestImagesRedelivered: a generated catalog with artwork, delivered once, twice
// and as an at-least-once transport would (streams interleaved differently, so
// artwork may come before its rows): identical sinks, the images of the reference
// fold, and the rows of the program streams' reference fold.
func TestImagesRedelivered(t *testing.T) {
	t.Parallel()
	hist, want := withArtwork(3, pt.Generate(21, 60))
	pool, _ := pgtest.NewDB(t)
	proj := catalog.New(nil)
	var sums map[string]string
	start := time.Now()
	for i, feed := range [][]events.Envelope{hist, append(slices.Clone(hist), hist...), pt.Redeliver(7, hist), pt.Redeliver(8, hist)} {
		pt.Truncate(t, pool, proj.Sinks())
		pt.ApplyDirect(t, pool, proj, feed, uint64(i), 150)
		got := map[string]images{}
		for _, table := range []string{catalog.ProgramsTable, catalog.EpisodesTable} {
			for id, im := range loadImages(t, pool, table) {
				if len(im) > 0 {
					got[id] = im
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("feed %d: images differ from the reference fold (%d owners, want %d)", i, len(got), len(want))
		}
		s := pt.Checksums(t, pool, proj.Sinks())
		if i == 0 {
			sums = s
			pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
		} else if !reflect.DeepEqual(s, sums) {
			t.Errorf("feed %d: sinks differ from a single delivery\n got %v\nwant %v", i, s, sums)
		}
	}
	if len(want) < 10 {
		t.Fatalf("only %d owners with artwork: the history tests little", len(want))
	}
	t.Logf("%d events, %d owners with artwork, 4 feeds in %s", len(hist), len(want), time.Since(start).Round(time.Millisecond))
}
