package catalog

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/internal/streamcheck"
)

// Artwork: the images of programs and episodes, folded from the asset streams.
//
// Decisions:
//
//   - ImagesTable holds one row per slot (the poster, thumbnail or backdrop of one
//     program or episode), and the rows' images column is recomputed from it in
//     SQL, in the same pipelined write as the rows: images is a function of the
//     slots alone. A slot's events may thus be applied before its program or
//     episode row exists (an at-least-once transport interleaves streams as it
//     likes; in production the upload needs the row, and Kafka keys asset events by
//     their program, but nothing here depends on it): the slot is kept, and a row
//     created later computes its images from the slots that wait for it.
//   - A slot holds one asset for ever (its pointer stream never changes), so the
//     asset stream's version is the slot's guard: an event at or below the slot's
//     version has been applied and changes nothing.
//   - AssetUploaded shows the original in every size at once ("/media/" + its key),
//     so a new image appears before its renditions exist. AssetProcessed replaces
//     small, medium and large by its JPEG renditions (the format every client
//     decodes; the WebP ones are stored beside them under the same names), only
//     while its UploadVersion is the slot's current upload: the renditions of a
//     replaced image are stale. original stays the original.
//   - URLs are stored as paths ("/media/assets/…"); the query API makes them
//     absolute (MEDIAMESH_CDN_BASE_URL or the request's base). The documents outbox
//     records the program (or episode) whose images changed, so Redis and the query
//     caches follow.

// ImagesTable holds the artwork slots the images columns are computed from.
const ImagesTable = "catalog_images_v1"

// Owner kinds of a slot.
const (
	ownerProgram = "program"
	ownerEpisode = "episode"
)

// mediaPrefix is the path under which the query role serves blobs (api /media/).
const mediaPrefix = "/media/"

// slot is an ImagesTable row as the fold sees it.
type slot struct {
	OwnerKind, OwnerID, Kind       string
	ProgramID, AssetID             string
	Version, UploadVersion         int64
	Original, Small, Medium, Large string

	dirty bool
}

func slotKey(ownerKind, ownerID, kind string) string { return ownerKind + "/" + ownerID + "/" + kind }

func (s *slot) key() string { return slotKey(s.OwnerKind, s.OwnerID, s.Kind) }

// assetRef is what the fold needs of an asset event: whose slot it fills.
type assetRef struct {
	AssetID, ProgramID, EpisodeID, Kind string
}

// owner returns the slot's owner kind and id.
func (a assetRef) owner() (string, string) {
	if a.EpisodeID != "" {
		return ownerEpisode, a.EpisodeID
	}
	return ownerProgram, a.ProgramID
}

// assetOf returns the slot an asset event fills; ok is false for other events
// (AssetSlotAssigned carries nothing the catalog shows).
func assetOf(ev events.Event) (assetRef, bool) {
	switch e := ev.(type) {
	case events.AssetUploaded:
		return assetRef{e.AssetID, e.ProgramID, e.EpisodeID, e.Kind}, true
	case events.AssetProcessed:
		return assetRef{e.AssetID, e.ProgramID, e.EpisodeID, e.Kind}, true
	}
	return assetRef{}, false
}

// checkAsset returns why an asset event cannot be applied (it is poison), or nil:
// it must sit on its asset's stream, with well-formed ids, a known kind and, for an
// upload, an original key.
func checkAsset(env events.Envelope, ev events.Event) error {
	a, ok := assetOf(ev)
	if !ok {
		return nil
	}
	switch {
	case env.StreamID != events.AssetStreamID(a.AssetID):
		return fmt.Errorf("event of asset %q on stream %q", a.AssetID, env.StreamID)
	case !streamcheck.ValidUUID(a.AssetID) || !streamcheck.ValidUUID(a.ProgramID):
		return fmt.Errorf("asset %q of program %q: not UUIDs", a.AssetID, a.ProgramID)
	case a.EpisodeID != "" && !streamcheck.ValidUUID(a.EpisodeID):
		return fmt.Errorf("episode id %q is not a UUID", a.EpisodeID)
	case a.Kind != events.AssetKindPoster && a.Kind != events.AssetKindThumbnail && a.Kind != events.AssetKindBackdrop:
		return fmt.Errorf("asset kind %q", a.Kind)
	case env.Version < 1:
		return fmt.Errorf("stream version %d", env.Version)
	}
	if u, ok := ev.(events.AssetUploaded); ok && u.OriginalKey == "" {
		return fmt.Errorf("asset %s: upload without an original key", a.AssetID)
	}
	return nil
}

// applyAsset folds an asset event onto its slot, behind the slot's version guard,
// and records the owner whose images must be recomputed when a URL changed.
func (f *fold) applyAsset(d decoded) {
	a, ok := assetOf(d.ev)
	if !ok {
		return
	}
	v := d.env.Version
	ownerKind, ownerID := a.owner()
	k := slotKey(ownerKind, ownerID, a.Kind)
	s := f.slots[k]
	if s != nil && v <= s.Version {
		return
	}
	if s == nil {
		s = &slot{OwnerKind: ownerKind, OwnerID: ownerID, Kind: a.Kind}
		f.slots[k] = s
	}
	before := [4]string{s.Original, s.Small, s.Medium, s.Large}
	s.ProgramID, s.AssetID, s.Version, s.dirty = a.ProgramID, a.AssetID, v, true
	switch e := d.ev.(type) {
	case events.AssetUploaded:
		orig := mediaPrefix + e.OriginalKey
		s.UploadVersion = v
		s.Original, s.Small, s.Medium, s.Large = orig, orig, orig, orig
	case events.AssetProcessed:
		if s.UploadVersion == 0 {
			// Never seen its upload (per-stream order makes this impossible on every
			// transport): the processed event names the original it was made from.
			orig := mediaPrefix + e.OriginalKey
			s.UploadVersion = e.UploadVersion
			s.Original, s.Small, s.Medium, s.Large = orig, orig, orig, orig
		}
		if e.UploadVersion != s.UploadVersion {
			break // the renditions of a replaced image
		}
		for _, r := range e.Renditions {
			if r.Format != events.AssetFormatJPEG || r.Key == "" {
				continue
			}
			switch r.Size {
			case events.AssetSizeSmall:
				s.Small = mediaPrefix + r.Key
			case events.AssetSizeMedium:
				s.Medium = mediaPrefix + r.Key
			case events.AssetSizeLarge:
				s.Large = mediaPrefix + r.Key
			}
		}
	}
	if before != [4]string{s.Original, s.Small, s.Medium, s.Large} {
		f.refreshImages(ownerKind, ownerID)
		if o := [2]string{ownerKind, ownerID}; !f.artSeen[o] {
			f.artSeen[o] = true
			f.artChanged = append(f.artChanged, o)
		}
	}
}

// refreshImages records that an owner's images column must be recomputed.
func (f *fold) refreshImages(ownerKind, ownerID string) {
	if ownerKind == ownerEpisode {
		f.imageEpisodes[ownerID] = true
	} else {
		f.imagePrograms[ownerID] = true
	}
}

// markImages records in the documents outbox the programs and episodes whose
// images changed, when their rows exist (a row created later is recorded by its
// creation).
func (f *fold) markImages() {
	for _, o := range f.artChanged {
		switch o[0] {
		case ownerProgram:
			if f.programs[o[1]] != nil {
				f.markProgram(o[1], false)
			}
		case ownerEpisode:
			if e := f.episodes[o[1]]; e != nil {
				f.markEpisode(e.ProgramID, e.ID)
			}
		}
	}
}

// sortedSlots returns the batch's changed slots in key order (a fixed row order
// for the upsert, and a stable outbox order).
func (f *fold) sortedSlots() []*slot {
	var out []*slot
	for _, s := range f.slots {
		if s.dirty {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *slot) int { return strings.Compare(a.key(), b.key()) })
	return out
}

// slotColumns returns the slot upsert's column arrays of rows.
func slotColumns(rows []*slot) []any {
	n := len(rows)
	kinds, owners, slotKinds, pids, aids := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	versions, uploads := make([]int64, n), make([]int64, n)
	origs, smalls, mediums, larges := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, s := range rows {
		kinds[i], owners[i], slotKinds[i], pids[i], aids[i] = s.OwnerKind, s.OwnerID, s.Kind, s.ProgramID, s.AssetID
		versions[i], uploads[i] = s.Version, s.UploadVersion
		origs[i], smalls[i], mediums[i], larges[i] = s.Original, s.Small, s.Medium, s.Large
	}
	return []any{kinds, owners, slotKinds, pids, aids, versions, uploads, origs, smalls, mediums, larges}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

const (
	sqlLoadSlots = `SELECT s.owner_kind, s.owner_id::text, s.kind, s.program_id::text, s.asset_id::text, s.version, s.upload_version,
		s.original, s.small, s.medium, s.large
		FROM catalog_images_v1 s JOIN unnest($1::text[], $2::uuid[], $3::text[]) AS k(owner_kind, owner_id, kind)
		ON s.owner_kind = k.owner_kind AND s.owner_id = k.owner_id AND s.kind = k.kind`
	sqlUpsertSlots = `INSERT INTO catalog_images_v1 AS t
		(owner_kind, owner_id, kind, program_id, asset_id, version, upload_version, original, small, medium, large)
		SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::bigint[], $7::bigint[],
			$8::text[], $9::text[], $10::text[], $11::text[])
		ON CONFLICT (owner_kind, owner_id, kind) DO UPDATE SET program_id = EXCLUDED.program_id, asset_id = EXCLUDED.asset_id,
			version = EXCLUDED.version, upload_version = EXCLUDED.upload_version, original = EXCLUDED.original,
			small = EXCLUDED.small, medium = EXCLUDED.medium, large = EXCLUDED.large
		WHERE t.version < EXCLUDED.version`
	// The images of the named rows, from their slots (API.md's shape: an object per
	// kind with small, medium, large and original); rows whose images are already
	// that are left alone.
	sqlProgramImages = `UPDATE catalog_programs_v1 t SET images = i.images
		FROM (SELECT o.id, COALESCE((SELECT jsonb_object_agg(s.kind, jsonb_build_object('small', s.small, 'medium', s.medium,
				'large', s.large, 'original', s.original))
			FROM catalog_images_v1 s WHERE s.owner_kind = 'program' AND s.owner_id = o.id), '{}'::jsonb) AS images
			FROM unnest($1::uuid[]) AS o(id)) i
		WHERE t.id = i.id AND t.images IS DISTINCT FROM i.images`
	sqlEpisodeImages = `UPDATE catalog_episodes_v1 t SET images = i.images
		FROM (SELECT o.id, COALESCE((SELECT jsonb_object_agg(s.kind, jsonb_build_object('small', s.small, 'medium', s.medium,
				'large', s.large, 'original', s.original))
			FROM catalog_images_v1 s WHERE s.owner_kind = 'episode' AND s.owner_id = o.id), '{}'::jsonb) AS images
			FROM unnest($1::uuid[]) AS o(id)) i
		WHERE t.id = i.id AND t.images IS DISTINCT FROM i.images`
)
