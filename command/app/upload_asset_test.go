package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// fakeInspector answers like infra/imaging: a JPEG of fixed dimensions for any
// bytes that start with "JPEG", an error otherwise (or err when set).
type fakeInspector struct{ err error }

func (f fakeInspector) Inspect(_ context.Context, data []byte) (asset.Image, error) {
	if f.err != nil {
		return asset.Image{}, f.err
	}
	if len(data) < 4 || string(data[:4]) != "JPEG" {
		return asset.Image{}, fmt.Errorf("not an image: %w", asset.ErrUnsupportedImage)
	}
	sum := sha256.Sum256(data)
	return asset.Image{ContentType: "image/jpeg", Width: 2000, Height: 3000, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// putRecord is one Put, with how many appends the event store had seen by then.
type putRecord struct {
	key, contentType string
	size             int
	appendsBefore    int
}

type fakeOriginals struct {
	mu    sync.Mutex
	store *memStore
	puts  []putRecord
	fail  error
}

func (f *fakeOriginals) Put(_ context.Context, key string, data []byte, ct string) error {
	f.store.mu.Lock()
	writes := f.store.writes
	f.store.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.puts = append(f.puts, putRecord{key: key, contentType: ct, size: len(data), appendsBefore: writes})
	return nil
}

func (f *fakeOriginals) all() []putRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]putRecord(nil), f.puts...)
}

type assetFixture struct {
	fixture
	originals *fakeOriginals
	upload    UploadAssetHandler
	record    RecordAssetProcessedHandler
}

func newAssetFixture(t *testing.T, inspector ImageInspector) assetFixture {
	t.Helper()
	f := newFixture(t)
	o := &fakeOriginals{store: f.store}
	if inspector == nil {
		inspector = fakeInspector{}
	}
	return assetFixture{
		fixture:   f,
		originals: o,
		upload:    NewUploadAssetHandler(f.store, inspector, o, asset.Limits{}),
		record:    NewRecordAssetProcessedHandler(f.store),
	}
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// uploadedEvents returns the AssetUploaded events of an asset's stream.
func uploadedEvents(t *testing.T, s *memStore, assetID string) []events.AssetUploaded {
	t.Helper()
	var out []events.AssetUploaded
	for _, env := range s.stream(events.AssetStreamID(assetID)) {
		ev, err := events.NewCodec().DecodeEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		if up, ok := ev.(events.AssetUploaded); ok {
			out = append(out, up)
		}
	}
	return out
}

func TestUploadAssetToProgramAndEpisode(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	ep := f.addEpisode(t, p.ID, 1, 1)
	data := []byte("JPEG poster bytes")
	key := "originals/" + shaOf(data) + ".jpg"
	u := uuid.MustParse(ep.ID)
	upperEpisode := fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])

	tests := []struct {
		name          string
		cmd           UploadAsset
		wantProgram   string
		wantEpisode   string
		wantSlotEvent events.AssetSlotAssigned
	}{
		{"program poster", UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: data}, p.ID, "", events.AssetSlotAssigned{ProgramID: p.ID, Kind: "poster"}},
		{"episode thumbnail (upper-case id)", UploadAsset{Meta: meta(), Kind: "thumbnail", EpisodeID: upperEpisode, Data: data}, p.ID, ep.ID, events.AssetSlotAssigned{ProgramID: p.ID, EpisodeID: ep.ID, Kind: "thumbnail"}},
	}
	for _, tc := range tests {
		res, err := f.upload.Handle(ctx, tc.cmd)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := uuid.Parse(res.ID); err != nil || uuid.MustParse(res.ID).Version() != 7 {
			t.Fatalf("%s: asset id %q is not a UUIDv7", tc.name, res.ID)
		}
		if res.ProgramID != tc.wantProgram || res.EpisodeID != tc.wantEpisode || res.Version != 1 || !res.Created || !res.Changed ||
			res.StreamID != "asset-"+res.ID || res.OriginalKey != key || res.Kind != tc.cmd.Kind {
			t.Fatalf("%s: result %+v", tc.name, res)
		}
		if want := "assets/" + res.ID + "/large.jpg"; res.RenditionKeys["large"] != want || len(res.RenditionKeys) != 3 {
			t.Fatalf("%s: rendition keys %v", tc.name, res.RenditionKeys)
		}
		ups := uploadedEvents(t, f.store, res.ID)
		want := events.AssetUploaded{AssetID: res.ID, ProgramID: tc.wantProgram, EpisodeID: tc.wantEpisode, Kind: tc.cmd.Kind,
			OriginalKey: key, ContentType: "image/jpeg", Width: 2000, Height: 3000, Bytes: int64(len(data)), SHA256: shaOf(data)}
		if len(ups) != 1 || ups[0] != want {
			t.Fatalf("%s: events %+v, want %+v", tc.name, ups, want)
		}
		slotStream := events.AssetSlotStreamID(tc.wantProgram, tc.wantEpisode, tc.cmd.Kind)
		ptr := f.store.stream(slotStream)
		tc.wantSlotEvent.AssetID = res.ID
		if ev, _ := events.NewCodec().DecodeEnvelope(ptr[0]); len(ptr) != 1 || ev != tc.wantSlotEvent {
			t.Fatalf("%s: slot pointer %+v", tc.name, ptr)
		}
	}
	// The original went to storage before the AssetUploaded that names it: at the
	// time of each Put, the appends so far were the programs', episodes' and pointers'.
	puts := f.originals.all()
	if len(puts) != 2 || puts[0].key != key || puts[0].contentType != "image/jpeg" || puts[0].size != len(data) {
		t.Fatalf("puts %+v", puts)
	}
	beforeFirstUpload := 4 // the program, the episode's pointer and EpisodeAdded, the poster's slot pointer
	if puts[0].appendsBefore != beforeFirstUpload {
		t.Fatalf("the original was stored after %d appends, want %d (before its AssetUploaded)", puts[0].appendsBefore, beforeFirstUpload)
	}
}

func TestUploadAssetReplaceAndNoChange(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	first, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "backdrop", ProgramID: p.ID, Data: []byte("JPEG one")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "backdrop", ProgramID: p.ID, Data: []byte("JPEG two")})
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || second.Version != 2 || !second.Created || second.OriginalKey == first.OriginalKey {
		t.Fatalf("replacement %+v after %+v: want the same asset at version 2 with a new original", second, first)
	}
	again, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "backdrop", ProgramID: p.ID, Data: []byte("JPEG two")})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.Version != 2 || again.Changed || again.Created || again.Position != second.Position || again.OriginalKey != second.OriginalKey {
		t.Fatalf("same image again: %+v, want unchanged version 2", again)
	}
	if n := len(uploadedEvents(t, f.store, first.ID)); n != 2 {
		t.Fatalf("%d uploads stored, want 2", n)
	}
	if n := len(f.originals.all()); n != 2 {
		t.Fatalf("%d originals stored, want 2 (nothing for the unchanged upload)", n)
	}
	// Another kind is another slot, another asset.
	poster, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG two")})
	if err != nil || poster.ID == first.ID || poster.Version != 1 {
		t.Fatalf("poster %+v %v", poster, err)
	}
	// If-Match names the asset's version.
	_, err = f.upload.Handle(ctx, UploadAsset{Meta: Meta{ExpectedVersion: ptr(int64(1))}, Kind: "backdrop", ProgramID: p.ID, Data: []byte("JPEG three")})
	if !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale If-Match: %v", err)
	}
	res, err := f.upload.Handle(ctx, UploadAsset{Meta: Meta{ExpectedVersion: ptr(int64(2))}, Kind: "backdrop", ProgramID: p.ID, Data: []byte("JPEG three")})
	if err != nil || res.Version != 3 {
		t.Fatalf("matching If-Match: %+v %v", res, err)
	}
}

// TestUploadAssetBadInputWritesNothing: every rejected upload leaves no event, no
// pointer and no stored original.
func TestUploadAssetBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	ep := f.addEpisode(t, p.ID, 1, 1)
	archived := f.create(t)
	if _, err := f.h.ArchiveProgram.Handle(ctx, ArchiveProgram{Meta: meta(), ProgramID: archived.ID}); err != nil {
		t.Fatal(err)
	}
	img := []byte("JPEG fine")
	tests := []struct {
		name      string
		cmd       UploadAsset
		inspector ImageInspector
		wantErr   error
		wantField string
	}{
		{name: "unknown kind", cmd: UploadAsset{Kind: "cover", ProgramID: p.ID, Data: img}, wantField: "kind"},
		{name: "no target", cmd: UploadAsset{Kind: "poster", Data: img}, wantField: "program_id"},
		{name: "both targets", cmd: UploadAsset{Kind: "poster", ProgramID: p.ID, EpisodeID: ep.ID, Data: img}, wantField: "episode_id"},
		{name: "malformed program id", cmd: UploadAsset{Kind: "poster", ProgramID: "42", Data: img}, wantField: "program_id"},
		{name: "empty file", cmd: UploadAsset{Kind: "poster", ProgramID: p.ID}, wantField: "file"},
		{name: "unknown program", cmd: UploadAsset{Kind: "poster", ProgramID: uuid.NewString(), Data: img}, wantErr: ErrNotFound},
		{name: "unknown episode", cmd: UploadAsset{Kind: "poster", EpisodeID: uuid.NewString(), Data: img}, wantErr: ErrNotFound},
		{name: "program id given as episode", cmd: UploadAsset{Kind: "poster", EpisodeID: p.ID, Data: img}, wantErr: ErrNotFound},
		{name: "archived program", cmd: UploadAsset{Kind: "poster", ProgramID: archived.ID, Data: img}, wantErr: program.ErrInvalidState},
		{name: "not an image", cmd: UploadAsset{Kind: "poster", ProgramID: p.ID, Data: []byte("plain text")}, wantErr: asset.ErrUnsupportedImage},
		{name: "corrupt image", cmd: UploadAsset{Kind: "poster", ProgramID: p.ID, Data: img}, inspector: fakeInspector{err: fmt.Errorf("cut: %w", asset.ErrCorruptImage)}, wantErr: asset.ErrCorruptImage},
		{name: "bomb", cmd: UploadAsset{Kind: "poster", ProgramID: p.ID, Data: img}, inspector: fakeInspector{err: fmt.Errorf("50000 × 50000: %w", asset.ErrImageTooLarge)}, wantErr: asset.ErrImageTooLarge},
	}
	before := f.store.writeCount()
	for _, tc := range tests {
		h := f.upload
		if tc.inspector != nil {
			h = NewUploadAssetHandler(f.store, tc.inspector, f.originals, asset.Limits{})
		}
		_, err := h.Handle(ctx, tc.cmd)
		if tc.wantField != "" {
			var ve *asset.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 || ve.Fields[0].Field != tc.wantField {
				t.Errorf("%s: err = %v, want a validation error on %s", tc.name, err, tc.wantField)
			}
		} else if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if after := f.store.writeCount(); after != before {
		t.Fatalf("bad uploads appended %d times", after-before)
	}
	if puts := f.originals.all(); len(puts) != 0 {
		t.Fatalf("bad uploads stored %v", puts)
	}
}

func TestUploadAssetStorageFailureAppendsNoUpload(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	f.originals.fail = errors.New("disk full")
	_, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG x")})
	if err == nil {
		t.Fatal("upload succeeded without storage")
	}
	f.store.set(func(s *memStore) {
		for id, evs := range s.streams {
			if len(id) > 6 && id[:6] == "asset-" && len(evs) > 0 {
				t.Errorf("an asset stream was written: %s", id)
			}
		}
	})
	// The slot's pointer may stay; the next upload uses it.
	f.originals.fail = nil
	res, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG x")})
	if err != nil || res.Version != 1 {
		t.Fatalf("retry after storage came back: %+v %v", res, err)
	}
}

func TestUploadAssetIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	cmd := UploadAsset{Meta: Meta{Actor: "e", IdempotencyKey: "key-1"}, Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG a")}
	first, err := f.upload.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else replaces the image meanwhile; the retry still gets its own answer.
	if _, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG b")}); err != nil {
		t.Fatal(err)
	}
	retry, err := f.upload.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(retry, first) {
		t.Fatalf("retry %+v, first %+v", retry, first)
	}
	if n := len(uploadedEvents(t, f.store, first.ID)); n != 2 {
		t.Fatalf("%d uploads, want 2 (the retry appended nothing)", n)
	}
}

// TestUploadAssetConcurrentFirstUploads: two first uploads to one slot end on one
// asset, both recorded in order.
func TestUploadAssetConcurrentFirstUploads(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	const n = 6
	results := make([]AssetUploadResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte(fmt.Sprintf("JPEG %d", i))})
		}()
	}
	wg.Wait()
	versions := map[int64]bool{}
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("upload %d: %v", i, errs[i])
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("uploads ended on assets %s and %s", results[0].ID, results[i].ID)
		}
		versions[results[i].Version] = true
	}
	if len(versions) != n || len(uploadedEvents(t, f.store, results[0].ID)) != n {
		t.Fatalf("versions %v, want %d distinct", versions, n)
	}
	if ptr := f.store.stream(events.AssetSlotStreamID(p.ID, "", "poster")); len(ptr) != 1 {
		t.Fatalf("slot pointer has %d events", len(ptr))
	}
}

func TestRecordAssetProcessed(t *testing.T) {
	t.Parallel()
	f := newAssetFixture(t, nil)
	p := f.create(t)
	up, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG a")})
	if err != nil {
		t.Fatal(err)
	}
	uploadEnv := f.store.stream(up.StreamID)[0]
	result := events.AssetProcessed{AssetID: up.ID, UploadVersion: 1, SHA256: shaOf([]byte("JPEG a")),
		Renditions: []events.AssetRendition{{Size: "small", Format: "jpeg", Key: "assets/" + up.ID + "/small.jpg", ContentType: "image/jpeg", Width: 160, Height: 240, Bytes: 10}}}
	ok, err := f.record.RecordProcessed(ctx, result, uploadEnv.EventID)
	if err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	stream := f.store.stream(up.StreamID)
	if len(stream) != 2 || stream[1].Type != events.TypeAssetProcessed || stream[1].Metadata.CausationID != uploadEnv.EventID || stream[1].Metadata.Actor != ProcessorActor {
		t.Fatalf("stream %+v", stream)
	}
	ev, _ := events.NewCodec().DecodeEnvelope(stream[1])
	got := ev.(events.AssetProcessed)
	if got.ProgramID != p.ID || got.Kind != "poster" || got.OriginalKey != up.OriginalKey || len(got.Renditions) != 1 {
		t.Fatalf("recorded %+v", got)
	}
	// A second run of the processor records nothing.
	if ok, err := f.record.RecordProcessed(ctx, result, uploadEnv.EventID); ok || err != nil {
		t.Fatalf("second record: %v %v", ok, err)
	}
	if n := len(f.store.stream(up.StreamID)); n != 2 {
		t.Fatalf("%d events after a repeated record", n)
	}
	// Results for uploads that do not exist are refused.
	bad := result
	bad.UploadVersion = 9
	if _, err := f.record.RecordProcessed(ctx, bad, "other"); !errors.Is(err, asset.ErrUnknownUpload) {
		t.Fatalf("unknown upload: %v", err)
	}
	bad = result
	bad.AssetID = uuid.NewString()
	if _, err := f.record.RecordProcessed(ctx, bad, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown asset: %v", err)
	}
	// A conflict (an upload arriving meanwhile) is retried.
	up2, err := f.upload.Handle(ctx, UploadAsset{Meta: meta(), Kind: "poster", ProgramID: p.ID, Data: []byte("JPEG b")})
	if err != nil {
		t.Fatal(err)
	}
	f.store.set(func(s *memStore) { s.conflicts = 2 })
	second := events.AssetProcessed{AssetID: up.ID, UploadVersion: up2.Version, SHA256: shaOf([]byte("JPEG b"))}
	if ok, err := f.record.RecordProcessed(ctx, second, f.store.stream(up.StreamID)[2].EventID); !ok || err != nil {
		t.Fatalf("record after conflicts: %v %v", ok, err)
	}
}
