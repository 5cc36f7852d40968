package events_test

import (
	"testing"

	"github.com/mediamesh/mediamesh/events"
)

func TestAssetNames(t *testing.T) {
	t.Parallel()
	const (
		pid = "0190d5a0-0000-7000-8000-000000000001"
		eid = "0190d5a0-0000-7000-8000-0000000000e1"
		aid = "0190d5a0-0000-7000-8000-0000000000a1"
		sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	)
	tests := []struct{ got, want string }{
		{events.AssetStreamID(aid), "asset-" + aid},
		{events.AssetSlotStreamID(pid, "", "poster"), "assetslot-program-" + pid + "-poster"},
		{events.AssetSlotStreamID(pid, eid, "poster"), "assetslot-episode-" + eid + "-poster"},
		{events.AssetOriginalKey(sha, "png"), "originals/" + sha + ".png"},
		{events.AssetRenditionKey(aid, events.AssetSizeSmall, events.AssetFormatJPEG), "assets/" + aid + "/small.jpg"},
		{events.AssetRenditionKey(aid, events.AssetSizeLarge, events.AssetFormatWebP), "assets/" + aid + "/large.webp"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	// Stream names must not be taken for a program's stream by anything that strips
	// "program-" (see ProgramExternalIDStreamID).
	for _, s := range []string{events.AssetStreamID(aid), events.AssetSlotStreamID(pid, "", "poster")} {
		if len(s) >= len("program-") && s[:len("program-")] == "program-" {
			t.Errorf("%s starts like a program stream", s)
		}
	}
}
