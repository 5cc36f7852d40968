package asset_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/events"
)

const (
	assetID   = "0190d5a0-0000-7000-8000-0000000000a1"
	programID = "0190d5a0-0000-7000-8000-000000000001"
	episodeID = "0190d5a0-0000-7000-8000-0000000000e1"
	shaA      = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB      = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func img(sha string) asset.Image {
	return asset.Image{ContentType: asset.ContentTypeJPEG, Width: 2000, Height: 3000, Bytes: 123456, SHA256: sha}
}

func uploaded(sha string) events.AssetUploaded {
	return events.AssetUploaded{AssetID: assetID, ProgramID: programID, EpisodeID: episodeID, Kind: "poster",
		OriginalKey: "originals/" + sha + ".jpg", ContentType: "image/jpeg", Width: 2000, Height: 3000, Bytes: 123456, SHA256: sha}
}

func processed(version int64, sha string) events.AssetProcessed {
	return events.AssetProcessed{AssetID: assetID, ProgramID: programID, EpisodeID: episodeID, Kind: "poster",
		UploadVersion: version, SHA256: sha, OriginalKey: "originals/" + sha + ".jpg",
		Renditions: []events.AssetRendition{{Size: "small", Format: "jpeg", Key: "assets/" + assetID + "/small.jpg", ContentType: "image/jpeg", Width: 160, Height: 240, Bytes: 900}}}
}

func history(evs ...events.Event) []asset.Recorded {
	out := make([]asset.Recorded, len(evs))
	for i, e := range evs {
		out[i] = asset.Recorded{Event: e, Version: int64(i + 1)}
	}
	return out
}

var slot = asset.Slot{ProgramID: programID, EpisodeID: episodeID, Kind: asset.KindPoster}

// TestUpload is given events, when upload, then events.
func TestUpload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		given   []events.Event
		image   asset.Image
		limits  asset.Limits
		want    []events.Event
		wantErr error
	}{
		{name: "first upload", image: img(shaA), want: []events.Event{uploaded(shaA)}},
		{name: "replacement", given: []events.Event{uploaded(shaA), processed(1, shaA)}, image: img(shaB), want: []events.Event{uploaded(shaB)}},
		{name: "same image again changes nothing", given: []events.Event{uploaded(shaA)}, image: img(shaA), want: nil},
		{name: "back to an earlier image is a change", given: []events.Event{uploaded(shaA), uploaded(shaB)}, image: img(shaA), want: []events.Event{uploaded(shaA)}},
		{name: "unsupported type", image: asset.Image{ContentType: "image/gif", Width: 1, Height: 1, Bytes: 1, SHA256: shaA}, wantErr: asset.ErrUnsupportedImage},
		{name: "too many pixels", image: asset.Image{ContentType: "image/png", Width: 8000, Height: 8000, Bytes: 1, SHA256: shaA}, wantErr: asset.ErrImageTooLarge},
		{name: "side too long", image: asset.Image{ContentType: "image/png", Width: 20001, Height: 1, Bytes: 1, SHA256: shaA}, wantErr: asset.ErrImageTooLarge},
		{name: "custom limits", image: img(shaA), limits: asset.Limits{MaxPixels: 1000}, wantErr: asset.ErrImageTooLarge},
		{name: "too many bytes", image: img(shaA), limits: asset.Limits{MaxBytes: 1000}, wantErr: asset.ErrImageTooLarge},
		{name: "no pixels", image: asset.Image{ContentType: "image/png", Width: 0, Height: 10, Bytes: 1, SHA256: shaA}, wantErr: asset.ErrCorruptImage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var a *asset.Asset
			var err error
			if len(tc.given) == 0 {
				a, err = asset.New(assetID, slot)
			} else {
				a, err = asset.Load(assetID, history(tc.given...))
			}
			if err != nil {
				t.Fatal(err)
			}
			changed, err := a.Upload(tc.image, tc.limits)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if len(a.Pending()) != 0 {
					t.Fatalf("a failed upload recorded %v", a.Pending())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != (len(tc.want) > 0) || !reflect.DeepEqual(a.Pending(), tc.want) {
				t.Fatalf("changed %v, pending %+v, want %+v", changed, a.Pending(), tc.want)
			}
			if cur, ok := a.Current(); !ok || cur.SHA256 != tc.image.SHA256 || cur.Version != int64(len(tc.given)+len(tc.want)) && len(tc.want) > 0 {
				t.Fatalf("current = %+v %v", cur, ok)
			}
		})
	}
}

func TestRecordProcessed(t *testing.T) {
	t.Parallel()
	p := processed(1, shaA)
	p.ProgramID, p.Kind = "", "" // the aggregate fills in the slot
	tests := []struct {
		name    string
		given   []events.Event
		result  events.AssetProcessed
		want    []events.Event
		wantErr error
	}{
		{name: "first result", given: []events.Event{uploaded(shaA)}, result: p, want: []events.Event{processed(1, shaA)}},
		{name: "retried processor changes nothing", given: []events.Event{uploaded(shaA), processed(1, shaA)}, result: p, want: nil},
		{name: "superseded upload is still recorded", given: []events.Event{uploaded(shaA), uploaded(shaB)}, result: p, want: []events.Event{processed(1, shaA)}},
		{name: "unknown upload version", given: []events.Event{uploaded(shaA)}, result: processed(7, shaA), wantErr: asset.ErrUnknownUpload},
		{name: "hash of another upload", given: []events.Event{uploaded(shaA), uploaded(shaB)}, result: processed(2, shaA), wantErr: asset.ErrUnknownUpload},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := asset.Load(assetID, history(tc.given...))
			if err != nil {
				t.Fatal(err)
			}
			changed, err := a.RecordProcessed(tc.result)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || len(a.Pending()) != 0 {
					t.Fatalf("err = %v, pending %v; want %v", err, a.Pending(), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != (len(tc.want) > 0) || !reflect.DeepEqual(a.Pending(), tc.want) {
				t.Fatalf("changed %v, pending %+v, want %+v", changed, a.Pending(), tc.want)
			}
		})
	}
}

func TestLoadRejectsForeignEvents(t *testing.T) {
	t.Parallel()
	other := uploaded(shaB)
	other.Kind = "backdrop"
	tests := []struct {
		name  string
		given []events.Event
	}{
		{"empty", nil},
		{"starts with processing", []events.Event{processed(1, shaA)}},
		{"another slot's upload", []events.Event{uploaded(shaA), other}},
		{"a program event", []events.Event{uploaded(shaA), events.ProgramPublished{ProgramID: programID}}},
		{"processing of no upload", []events.Event{uploaded(shaA), processed(5, shaA)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := asset.Load(assetID, history(tc.given...)); err == nil {
				t.Fatal("loaded")
			}
		})
	}
}

func TestNewValidatesSlot(t *testing.T) {
	t.Parallel()
	_, err := asset.New("", asset.Slot{Kind: "cover"})
	var ve *asset.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 3 || !strings.Contains(err.Error(), "kind: must be one of") {
		t.Fatalf("err = %v", err)
	}
	if got := slot.StreamID(); got != "assetslot-episode-"+episodeID+"-poster" {
		t.Fatalf("slot stream %q", got)
	}
	if got := (asset.Slot{ProgramID: programID, Kind: asset.KindBackdrop}).StreamID(); got != "assetslot-program-"+programID+"-backdrop" {
		t.Fatalf("slot stream %q", got)
	}
}
