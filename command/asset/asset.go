// Package asset is the asset aggregate: one artwork slot (the poster, thumbnail or
// backdrop of a program or of an episode) with its current image and the renditions
// generated from it. It does no I/O: the application layer (command/app) inspects
// the uploaded bytes, stores the original and appends what the aggregate records.
//
// Decisions:
//   - An asset is the slot, not one file: uploading to a slot that already has an
//     image replaces it with a new AssetUploaded on the same stream. That keeps the
//     replacement atomic (the stream's expected version) and the rendition URLs
//     stable per slot, so a replacement has URLs whose content changed — the ones the
//     CDN must purge.
//   - Uploading the image the slot already holds (same SHA-256) changes nothing: no
//     event, like every other command that would change nothing.
//   - The image facts (type, dimensions, size, hash) come from the bytes; the
//     aggregate checks that they are sane and inside the limits it is told, it never
//     trusts a file name.
package asset

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mediamesh/mediamesh/events"
)

// Kind is the slot an image fills.
type Kind string

// The kinds of API.md's POST /v1/assets.
const (
	KindPoster    Kind = events.AssetKindPoster
	KindThumbnail Kind = events.AssetKindThumbnail
	KindBackdrop  Kind = events.AssetKindBackdrop
)

// Kinds lists every kind, in API.md's order.
func Kinds() []Kind { return []Kind{KindPoster, KindThumbnail, KindBackdrop} }

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool { return slices.Contains(Kinds(), k) }

// Content types of accepted images and the key extension of each.
const (
	ContentTypeJPEG = "image/jpeg"
	ContentTypePNG  = "image/png"
	ContentTypeWebP = "image/webp"
)

// Extension returns the key extension of an accepted content type ("" for others).
func Extension(contentType string) string {
	switch contentType {
	case ContentTypeJPEG:
		return "jpg"
	case ContentTypePNG:
		return "png"
	case ContentTypeWebP:
		return "webp"
	}
	return ""
}

// Errors of image inspection (infra/imaging wraps them) and of the aggregate's rules.
// The api maps each to its status; their wrapped messages are written for users.
var (
	// ErrUnsupportedImage: the bytes are not a JPEG, PNG or WebP image (HTTP 415).
	ErrUnsupportedImage = errors.New("unsupported image type")
	// ErrCorruptImage: the bytes start like an accepted image but do not decode
	// (truncated, damaged, animated WebP …) (HTTP 422).
	ErrCorruptImage = errors.New("corrupt image")
	// ErrImageTooLarge: the image's dimensions exceed the pixel limits, checked from
	// its header before anything is decoded (HTTP 422).
	ErrImageTooLarge = errors.New("image dimensions too large")
	// ErrWrongSlot: an event or a command names another slot than the asset's.
	ErrWrongSlot = errors.New("asset belongs to another slot")
	// ErrUnknownUpload: a processing result names an upload the asset does not have.
	ErrUnknownUpload = errors.New("unknown upload")
)

// FieldError is one invalid field of an upload: Field is its multipart name.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists every invalid field of an upload at once (HTTP 400).
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	s := "invalid input"
	for i, f := range e.Fields {
		if i == 0 {
			s += ": "
		} else {
			s += "; "
		}
		s += f.Field + ": " + f.Message
	}
	return s
}

// Slot names what an asset illustrates. ProgramID is always set (an episode's
// program too); EpisodeID only for an episode's artwork.
type Slot struct {
	ProgramID string
	EpisodeID string
	Kind      Kind
}

// StreamID is the slot's pointer stream.
func (s Slot) StreamID() string {
	return events.AssetSlotStreamID(s.ProgramID, s.EpisodeID, string(s.Kind))
}

// Image is what inspection read from an upload's bytes.
type Image struct {
	ContentType string
	Width       int
	Height      int
	Bytes       int64
	// SHA256 is the lower-case hex SHA-256 of the bytes.
	SHA256 string
}

// Ext is the key extension of the image's type.
func (i Image) Ext() string { return Extension(i.ContentType) }

// OriginalKey is the content-hashed blob key the original is stored under.
func (i Image) OriginalKey() string { return events.AssetOriginalKey(i.SHA256, i.Ext()) }

// Limits bound what an upload may be. They are checked again here (inspection checks
// them before decoding) so that no event can record an image beyond them.
type Limits struct {
	// MaxBytes is the largest original (default 20 MiB).
	MaxBytes int64
	// MaxPixels bounds width × height (default 40 megapixels).
	MaxPixels int64
	// MaxSide bounds each dimension (default 20,000 px).
	MaxSide int
}

// Defaults of Limits.
const (
	DefaultMaxBytes  = 20 << 20
	DefaultMaxPixels = 40_000_000
	DefaultMaxSide   = 20_000
)

// WithDefaults fills zero fields with the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxSide <= 0 {
		l.MaxSide = DefaultMaxSide
	}
	return l
}

// CheckDimensions returns an error wrapping ErrImageTooLarge (or ErrCorruptImage for
// a non-positive dimension) when width × height breaks the limits.
func (l Limits) CheckDimensions(width, height int) error {
	l = l.WithDefaults()
	switch {
	case width <= 0 || height <= 0:
		return fmt.Errorf("the image has no pixels (%d × %d): %w", width, height, ErrCorruptImage)
	case width > l.MaxSide || height > l.MaxSide:
		return fmt.Errorf("the image is %d × %d pixels; each side may have at most %d: %w", width, height, l.MaxSide, ErrImageTooLarge)
	case int64(width)*int64(height) > l.MaxPixels:
		return fmt.Errorf("the image is %d × %d = %d pixels; at most %d are accepted: %w",
			width, height, int64(width)*int64(height), l.MaxPixels, ErrImageTooLarge)
	}
	return nil
}

// Recorded is a stored event as the aggregate replays it.
type Recorded struct {
	Event      events.Event
	Version    int64
	OccurredAt time.Time
}

// Upload is one image the asset held, as its AssetUploaded recorded it.
type Upload struct {
	events.AssetUploaded
	// Version is the stream version of the AssetUploaded; for a pending one, the
	// version it gets when appended at the loaded version.
	Version int64
	// Processed holds the renditions once the processor recorded them.
	Processed *events.AssetProcessed
}

// Asset is the aggregate. Get one from New or Load.
type Asset struct {
	id   string
	slot Slot

	// uploads are every upload, oldest first; the last one is current.
	uploads []Upload

	version int64
	pending []events.Event
}

// New returns an asset without history for slot (the first upload to it).
func New(id string, slot Slot) (*Asset, error) {
	if err := validSlot(id, slot); err != nil {
		return nil, err
	}
	return &Asset{id: id, slot: slot}, nil
}

func validSlot(id string, slot Slot) error {
	var fields []FieldError
	if id == "" {
		fields = append(fields, FieldError{"id", "must not be empty"})
	}
	if slot.ProgramID == "" {
		fields = append(fields, FieldError{"program_id", "must not be empty"})
	}
	if !slot.Kind.Valid() {
		fields = append(fields, FieldError{"kind", "must be one of poster, thumbnail, backdrop"})
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}

// Load rebuilds an asset from its stream. The first event must be an AssetUploaded
// (it names the slot).
func Load(id string, history []Recorded) (*Asset, error) {
	if len(history) == 0 {
		return nil, fmt.Errorf("load asset %s: no events", id)
	}
	first, ok := history[0].Event.(events.AssetUploaded)
	if !ok {
		return nil, fmt.Errorf("load asset %s: first event is %T, want AssetUploaded", id, history[0].Event)
	}
	a, err := New(id, Slot{ProgramID: first.ProgramID, EpisodeID: first.EpisodeID, Kind: Kind(first.Kind)})
	if err != nil {
		return nil, fmt.Errorf("load asset %s: %w", id, err)
	}
	for _, r := range history {
		if err := a.apply(r.Event, r.Version); err != nil {
			return nil, fmt.Errorf("load asset %s at version %d: %w", id, r.Version, err)
		}
		a.version = r.Version
	}
	return a, nil
}

// ID is the asset's id.
func (a *Asset) ID() string { return a.id }

// Slot is what the asset illustrates.
func (a *Asset) Slot() Slot { return a.slot }

// Version is the version of the stored stream the asset was loaded from (0 for new).
func (a *Asset) Version() int64 { return a.version }

// Pending returns the events recorded since New or Load.
func (a *Asset) Pending() []events.Event { return slices.Clone(a.pending) }

// Current returns the asset's current image, false when it has none yet.
func (a *Asset) Current() (Upload, bool) {
	if len(a.uploads) == 0 {
		return Upload{}, false
	}
	return a.uploads[len(a.uploads)-1], true
}

// UploadAt returns the upload stored at stream version v.
func (a *Asset) UploadAt(v int64) (Upload, bool) {
	for _, u := range a.uploads {
		if u.Version == v && v > 0 {
			return u, true
		}
	}
	return Upload{}, false
}

// Upload makes img the asset's current image, recording AssetUploaded, unless it is
// already the current one (same SHA-256): then it records nothing and returns false.
func (a *Asset) Upload(img Image, limits Limits) (changed bool, err error) {
	if err := CheckImage(img, limits); err != nil {
		return false, err
	}
	if cur, ok := a.Current(); ok && cur.SHA256 == img.SHA256 {
		return false, nil
	}
	ev := events.AssetUploaded{
		AssetID:     a.id,
		ProgramID:   a.slot.ProgramID,
		EpisodeID:   a.slot.EpisodeID,
		Kind:        string(a.slot.Kind),
		OriginalKey: img.OriginalKey(),
		ContentType: img.ContentType,
		Width:       img.Width,
		Height:      img.Height,
		Bytes:       img.Bytes,
		SHA256:      img.SHA256,
	}
	if err := a.record(ev); err != nil {
		return false, err
	}
	return true, nil
}

// CheckImage returns why img cannot be an asset's image under limits, or nil: a
// type other than JPEG, PNG or WebP (ErrUnsupportedImage), dimensions or a size
// beyond the limits (ErrImageTooLarge), no pixels (ErrCorruptImage), or a malformed
// hash.
func CheckImage(img Image, limits Limits) error {
	limits = limits.WithDefaults()
	if Extension(img.ContentType) == "" {
		return fmt.Errorf("content type %q: only JPEG, PNG and WebP images are accepted: %w", img.ContentType, ErrUnsupportedImage)
	}
	if err := limits.CheckDimensions(img.Width, img.Height); err != nil {
		return err
	}
	if img.Bytes <= 0 || img.Bytes > limits.MaxBytes {
		return fmt.Errorf("the image has %d bytes; at most %d are accepted: %w", img.Bytes, limits.MaxBytes, ErrImageTooLarge)
	}
	if b, err := hex.DecodeString(img.SHA256); err != nil || len(b) != 32 || hex.EncodeToString(b) != img.SHA256 {
		return fmt.Errorf("sha256 %q is not 64 lower-case hex digits", img.SHA256)
	}
	return nil
}

// RecordProcessed records the renditions generated from the upload at stream version
// p.UploadVersion, unless that upload already has them (a retried processor): then
// it records nothing and returns false. It is recorded for a superseded upload too
// (readers ignore it): it documents what was written.
func (a *Asset) RecordProcessed(p events.AssetProcessed) (changed bool, err error) {
	u, ok := a.UploadAt(p.UploadVersion)
	if !ok {
		return false, fmt.Errorf("asset %s has no upload at version %d: %w", a.id, p.UploadVersion, ErrUnknownUpload)
	}
	if u.SHA256 != p.SHA256 {
		return false, fmt.Errorf("asset %s upload %d has sha256 %s, not %s: %w", a.id, p.UploadVersion, u.SHA256, p.SHA256, ErrUnknownUpload)
	}
	if u.Processed != nil {
		return false, nil
	}
	p.AssetID, p.ProgramID, p.EpisodeID, p.Kind, p.OriginalKey = a.id, a.slot.ProgramID, a.slot.EpisodeID, string(a.slot.Kind), u.OriginalKey
	if err := a.record(p); err != nil {
		return false, err
	}
	return true, nil
}

// record applies a new event and keeps it as pending; its version is the next one.
func (a *Asset) record(e events.Event) error {
	if err := a.apply(e, a.version+int64(len(a.pending))+1); err != nil {
		return err
	}
	a.pending = append(a.pending, e)
	return nil
}

// apply is the only place that changes the asset's state, for new and replayed
// events alike; v is the event's stream version.
func (a *Asset) apply(e events.Event, v int64) error {
	switch ev := e.(type) {
	case events.AssetUploaded:
		if ev.AssetID != a.id || ev.ProgramID != a.slot.ProgramID || ev.EpisodeID != a.slot.EpisodeID || Kind(ev.Kind) != a.slot.Kind {
			return fmt.Errorf("upload of %s/%s/%s/%s: %w", ev.AssetID, ev.ProgramID, ev.EpisodeID, ev.Kind, ErrWrongSlot)
		}
		a.uploads = append(a.uploads, Upload{AssetUploaded: ev, Version: v})
	case events.AssetProcessed:
		if ev.AssetID != a.id {
			return fmt.Errorf("processing of asset %s: %w", ev.AssetID, ErrWrongSlot)
		}
		for i := range a.uploads {
			if a.uploads[i].Version == ev.UploadVersion {
				p := ev
				a.uploads[i].Processed = &p
				return nil
			}
		}
		return fmt.Errorf("processing of upload %d: %w", ev.UploadVersion, ErrUnknownUpload)
	default:
		return fmt.Errorf("asset stream holds %T", e)
	}
	return nil
}
