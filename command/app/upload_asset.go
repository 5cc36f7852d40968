package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// ImageInspector reads an upload's facts from its bytes (infra/imaging.Inspector):
// the type by content, the dimensions from the header (checked against the pixel
// limits before anything is decoded), then a full decode that proves the file
// whole. Its errors wrap asset.ErrUnsupportedImage, ErrImageTooLarge or
// ErrCorruptImage.
type ImageInspector interface {
	Inspect(ctx context.Context, data []byte) (asset.Image, error)
}

// OriginalStore stores uploaded originals (infra/blob/fs, infra/blob/s3). Put
// replaces atomically; the keys are content-hashed, so a replacement writes the
// same bytes.
type OriginalStore interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
}

// UploadAsset stores an image as the poster, thumbnail or backdrop of a program or
// an episode (POST /v1/assets). Exactly one of ProgramID and EpisodeID is set.
// Meta.ExpectedVersion, when set, is the asset stream's version (0: the slot has
// no image yet).
type UploadAsset struct {
	Meta      Meta
	Kind      string
	ProgramID string
	EpisodeID string
	Data      []byte
}

// AssetUploadResult is what an upload reports: Result names the asset (ID), its
// program (ProgramID) and the write on the asset's stream, and the keys say where
// the original is and where the renditions will be.
type AssetUploadResult struct {
	Result
	EpisodeID   string
	Kind        string
	OriginalKey string
	// RenditionKeys are the JPEG renditions' keys by size name (events.AssetSize*);
	// the WebP renditions sit beside them (events.AssetRenditionKey). They are
	// served once the processor has made them.
	RenditionKeys map[string]string
}

// UploadAssetHandler handles UploadAsset.
type UploadAssetHandler struct {
	core      core
	inspector ImageInspector
	originals OriginalStore
	limits    asset.Limits
}

// NewUploadAssetHandler returns the handler; it panics on a nil dependency.
// limits' zero fields take asset's defaults; the inspector should enforce the same.
func NewUploadAssetHandler(store EventStore, inspector ImageInspector, originals OriginalStore, limits asset.Limits, opts ...Option) UploadAssetHandler {
	if inspector == nil || originals == nil {
		panic("app: nil ImageInspector or OriginalStore")
	}
	return UploadAssetHandler{core: newCore(store, opts), inspector: inspector, originals: originals, limits: limits.WithDefaults()}
}

// Event indexes of UploadAsset's derived event ids.
const (
	slotEventIndex     = 0 // AssetSlotAssigned on the slot's pointer stream
	uploadedEventIndex = 1 // AssetUploaded on the asset's stream
)

// Handle validates the command, resolves its program or episode (ErrNotFound when
// there is none; program.ErrInvalidState when it is archived), inspects the image,
// and only then writes:
//
//  1. the slot's pointer (AssetSlotAssigned, expecting no stream) when the slot
//     has no asset yet; the asset id is a new UUIDv7, or the one a concurrent first
//     upload registered;
//  2. the original, under its content-hashed key, before any event names it;
//  3. AssetUploaded on the asset's stream with the loaded version as the expected
//     version, retrying a bounded number of times on conflicts.
//
// Bad input writes nothing. Uploading the image the slot already shows changes
// nothing (Changed false, no event). With an Idempotency-Key a retried request finds
// its AssetUploaded and answers with the original result.
func (h UploadAssetHandler) Handle(ctx context.Context, cmd UploadAsset) (AssetUploadResult, error) {
	if err := validateUpload(cmd); err != nil {
		return AssetUploadResult{}, err
	}
	slot, err := h.resolveSlot(ctx, cmd)
	if err != nil {
		return AssetUploadResult{}, err
	}
	img, err := h.inspector.Inspect(ctx, cmd.Data)
	if err != nil {
		return AssetUploadResult{}, fmt.Errorf("upload asset: %w", err)
	}
	// The aggregate's checks, before anything is written.
	if err := asset.CheckImage(img, h.limits); err != nil {
		return AssetUploadResult{}, fmt.Errorf("upload asset: %w", err)
	}

	assetID, err := h.assign(ctx, cmd.Meta, slot)
	if err != nil {
		return AssetUploadResult{}, err
	}
	streamID := events.AssetStreamID(assetID)
	stored := false
	for attempt := 0; ; attempt++ {
		a, envs, err := h.loadAsset(ctx, assetID, slot)
		if err != nil {
			return AssetUploadResult{}, err
		}
		if env, ok := replayed(cmd.Meta, envs, uploadedEventIndex); ok {
			return h.original(assetID, env)
		}
		if err := checkExpected(cmd.Meta, streamID, a.Version()); err != nil {
			return AssetUploadResult{}, err
		}
		changed, err := a.Upload(img, h.limits)
		if err != nil {
			return AssetUploadResult{}, fmt.Errorf("upload asset: %w", err)
		}
		if !changed {
			last := envs[len(envs)-1]
			return h.result(a, Result{ID: assetID, ProgramID: slot.ProgramID, StreamID: streamID, Version: last.Version, Position: last.Position}), nil
		}
		if !stored {
			if err := h.originals.Put(ctx, img.OriginalKey(), cmd.Data, img.ContentType); err != nil {
				return AssetUploadResult{}, fmt.Errorf("upload asset: store original %s: %w", img.OriginalKey(), err)
			}
			stored = true
		}
		out, err := h.core.envelopes(cmd.Meta, a.Pending(), uploadedEventIndex)
		if err != nil {
			return AssetUploadResult{}, err
		}
		res, err := h.core.store.Append(ctx, streamID, a.Version(), out)
		if errors.Is(err, events.ErrVersionConflict) {
			retry, cerr := conflict(cmd.Meta, streamID, attempt, err)
			if retry {
				continue
			}
			return AssetUploadResult{}, cerr
		}
		if err != nil {
			return AssetUploadResult{}, fmt.Errorf("upload asset: append to %s: %w", streamID, err)
		}
		if res.StreamID != "" && res.StreamID != streamID {
			return AssetUploadResult{}, fmt.Errorf("upload asset: events of this command are stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
		}
		return h.result(a, Result{ID: assetID, ProgramID: slot.ProgramID, StreamID: streamID,
			Version: res.LastVersion, Position: res.Position, Changed: true, Created: true}), nil
	}
}

func validateUpload(cmd UploadAsset) error {
	var fields []asset.FieldError
	if !asset.Kind(cmd.Kind).Valid() {
		fields = append(fields, asset.FieldError{Field: "kind", Message: "must be one of poster, thumbnail, backdrop"})
	}
	switch {
	case cmd.ProgramID == "" && cmd.EpisodeID == "":
		fields = append(fields, asset.FieldError{Field: "program_id", Message: "one of program_id and episode_id is required"})
	case cmd.ProgramID != "" && cmd.EpisodeID != "":
		fields = append(fields, asset.FieldError{Field: "episode_id", Message: "give program_id or episode_id, not both"})
	case cmd.ProgramID != "" && !validID(cmd.ProgramID):
		fields = append(fields, asset.FieldError{Field: "program_id", Message: "must be a UUID"})
	case cmd.EpisodeID != "" && !validID(cmd.EpisodeID):
		fields = append(fields, asset.FieldError{Field: "episode_id", Message: "must be a UUID"})
	}
	if len(cmd.Data) == 0 {
		fields = append(fields, asset.FieldError{Field: "file", Message: "is required and must not be empty"})
	}
	if len(fields) > 0 {
		return &asset.ValidationError{Fields: fields}
	}
	return nil
}

// resolveSlot finds the program (and episode) the upload illustrates, from the
// event store: an unknown one is ErrNotFound, an archived one ErrInvalidState.
func (h UploadAssetHandler) resolveSlot(ctx context.Context, cmd UploadAsset) (asset.Slot, error) {
	kind := asset.Kind(cmd.Kind)
	if cmd.EpisodeID != "" {
		episodeID := strings.ToLower(cmd.EpisodeID)
		programID, err := h.core.resolveEpisode(ctx, episodeID)
		if err != nil {
			return asset.Slot{}, err
		}
		l, err := h.core.loadProgram(ctx, programID)
		if err != nil {
			return asset.Slot{}, err
		}
		ep, ok := l.program.Episode(episodeID)
		if !ok {
			return asset.Slot{}, fmt.Errorf("episode %s: %w", episodeID, ErrNotFound)
		}
		if ep.Status == program.StatusArchived || l.program.Status() == program.StatusArchived {
			return asset.Slot{}, fmt.Errorf("upload asset: episode %s is archived: %w", episodeID, program.ErrInvalidState)
		}
		return asset.Slot{ProgramID: programID, EpisodeID: episodeID, Kind: kind}, nil
	}
	programID := strings.ToLower(cmd.ProgramID)
	l, err := h.core.loadProgram(ctx, programID)
	if err != nil {
		return asset.Slot{}, err
	}
	if l.program.Status() == program.StatusArchived {
		return asset.Slot{}, fmt.Errorf("upload asset: program %s is archived: %w", programID, program.ErrInvalidState)
	}
	return asset.Slot{ProgramID: programID, Kind: kind}, nil
}

// assign returns the id of the slot's asset, registering a new one when the slot
// has none. Two first uploads racing for a slot both end with the winner's id.
func (h UploadAssetHandler) assign(ctx context.Context, meta Meta, slot asset.Slot) (string, error) {
	pointer := slot.StreamID()
	for attempt := 0; attempt < 3; attempt++ {
		id, err := h.slotAsset(ctx, pointer)
		if err != nil || id != "" {
			return id, err
		}
		id, err = newID()
		if err != nil {
			return "", err
		}
		envs, err := h.core.envelopes(meta, []events.Event{events.AssetSlotAssigned{
			AssetID: id, ProgramID: slot.ProgramID, EpisodeID: slot.EpisodeID, Kind: string(slot.Kind)}}, slotEventIndex)
		if err != nil {
			return "", err
		}
		res, err := h.core.store.Append(ctx, pointer, events.ExpectNoStream, envs)
		if errors.Is(err, events.ErrVersionConflict) {
			continue // another upload registered the slot first: read its asset
		}
		if err != nil {
			return "", fmt.Errorf("upload asset: register %s: %w", pointer, err)
		}
		if res.StreamID != "" && res.StreamID != pointer {
			return "", fmt.Errorf("upload asset: events of this command are stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
		}
		// The pointer is ours, or (a retried request whose first run wrote it) the
		// first run's: it says which.
		return h.slotAsset(ctx, pointer)
	}
	return "", fmt.Errorf("upload asset: register %s: %w", pointer, events.ErrVersionConflict)
}

// slotAsset reads a slot's pointer: its asset id, or "" when the slot has none.
func (h UploadAssetHandler) slotAsset(ctx context.Context, pointer string) (string, error) {
	envs, err := h.core.store.ReadStream(ctx, pointer)
	if errors.Is(err, events.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("upload asset: read %s: %w", pointer, err)
	}
	ev, err := h.core.codec.DecodeEnvelope(envs[0])
	if err != nil {
		return "", fmt.Errorf("upload asset: decode %s: %w", pointer, err)
	}
	p, ok := ev.(events.AssetSlotAssigned)
	if !ok || !validID(p.AssetID) {
		return "", fmt.Errorf("upload asset: %s holds %T", pointer, ev)
	}
	return p.AssetID, nil
}

// loadAsset reads an asset's stream; a missing stream is a new asset of slot.
func (h UploadAssetHandler) loadAsset(ctx context.Context, assetID string, slot asset.Slot) (*asset.Asset, []events.Envelope, error) {
	a, envs, err := h.core.loadAsset(ctx, assetID)
	if errors.Is(err, ErrNotFound) {
		a, err := asset.New(assetID, slot)
		return a, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	if a.Slot() != slot {
		return nil, nil, fmt.Errorf("upload asset: asset %s illustrates %+v, not %+v: %w", assetID, a.Slot(), slot, asset.ErrWrongSlot)
	}
	return a, envs, nil
}

// loadAsset reads and decodes an asset's stream; ErrNotFound when it has none.
func (c core) loadAsset(ctx context.Context, assetID string) (*asset.Asset, []events.Envelope, error) {
	streamID := events.AssetStreamID(assetID)
	envs, err := c.store.ReadStream(ctx, streamID)
	if errors.Is(err, events.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return nil, nil, fmt.Errorf("asset %s: %w", assetID, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", streamID, err)
	}
	records := make([]asset.Recorded, len(envs))
	for i, env := range envs {
		ev, err := c.codec.DecodeEnvelope(env)
		if err != nil {
			return nil, nil, fmt.Errorf("load asset %s: version %d: %w", assetID, env.Version, err)
		}
		records[i] = asset.Recorded{Event: ev, Version: env.Version, OccurredAt: env.OccurredAt}
	}
	a, err := asset.Load(assetID, records)
	if err != nil {
		return nil, nil, err
	}
	return a, envs, nil
}

// original answers a retried upload whose AssetUploaded is already stored.
func (h UploadAssetHandler) original(assetID string, env events.Envelope) (AssetUploadResult, error) {
	ev, err := h.core.codec.DecodeEnvelope(env)
	if err != nil {
		return AssetUploadResult{}, fmt.Errorf("upload asset: decode original event: %w", err)
	}
	up, ok := ev.(events.AssetUploaded)
	if !ok || up.AssetID != assetID {
		return AssetUploadResult{}, fmt.Errorf("upload asset: the key's event in %s is %s: %w", env.StreamID, env.Type, ErrIdempotencyKeyReused)
	}
	return AssetUploadResult{
		Result: Result{ID: assetID, ProgramID: up.ProgramID, StreamID: env.StreamID, Version: env.Version, Position: env.Position,
			Changed: true, Created: true},
		EpisodeID: up.EpisodeID, Kind: up.Kind, OriginalKey: up.OriginalKey, RenditionKeys: renditionKeys(assetID),
	}, nil
}

func (h UploadAssetHandler) result(a *asset.Asset, r Result) AssetUploadResult {
	cur, _ := a.Current()
	return AssetUploadResult{Result: r, EpisodeID: a.Slot().EpisodeID, Kind: string(a.Slot().Kind),
		OriginalKey: cur.OriginalKey, RenditionKeys: renditionKeys(a.ID())}
}

func renditionKeys(assetID string) map[string]string {
	out := map[string]string{}
	for _, s := range []string{events.AssetSizeSmall, events.AssetSizeMedium, events.AssetSizeLarge} {
		out[s] = events.AssetRenditionKey(assetID, s, events.AssetFormatJPEG)
	}
	return out
}
