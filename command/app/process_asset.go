package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/mediamesh/mediamesh/events"
)

// ProcessorActor is the actor of the events the thumbnail processor records.
const ProcessorActor = "system:thumbnails"

// RecordAssetProcessedHandler records the thumbnail processor's results on the
// asset's stream. It implements projections/thumbnails.Recorder, so the processor
// changes an asset only through its aggregate, like any other command.
type RecordAssetProcessedHandler struct{ core core }

// NewRecordAssetProcessedHandler returns the handler; it panics on a nil store.
func NewRecordAssetProcessedHandler(store EventStore, opts ...Option) RecordAssetProcessedHandler {
	return RecordAssetProcessedHandler{core: newCore(store, opts)}
}

// RecordProcessed appends result (AssetProcessed) to its asset's stream unless that
// upload already has a result: then it returns false and writes nothing. The event
// id is derived from causationID (the processed AssetUploaded's event id), so a
// processor that crashed after the append and runs again cannot append twice even
// past this check. It retries a bounded number of times on version conflicts (an
// upload arriving meanwhile). A result for an upload the asset does not have wraps
// asset.ErrUnknownUpload; an unknown asset is ErrNotFound.
func (h RecordAssetProcessedHandler) RecordProcessed(ctx context.Context, result events.AssetProcessed, causationID string) (bool, error) {
	if !validID(result.AssetID) || causationID == "" {
		return false, fmt.Errorf("record asset processed: asset %q, causation %q: %w", result.AssetID, causationID, ErrNotFound)
	}
	meta := Meta{
		Actor:          ProcessorActor,
		IdempotencyKey: "mediamesh/asset-processed/" + causationID,
		CausationID:    causationID,
		CorrelationID:  causationID,
	}
	streamID := events.AssetStreamID(result.AssetID)
	for attempt := 0; ; attempt++ {
		a, envs, err := h.core.loadAsset(ctx, result.AssetID)
		if err != nil {
			return false, err
		}
		if _, ok := replayed(meta, envs, 0); ok {
			return false, nil
		}
		changed, err := a.RecordProcessed(result)
		if err != nil || !changed {
			return false, err
		}
		out, err := h.core.envelopes(meta, a.Pending(), 0)
		if err != nil {
			return false, err
		}
		res, err := h.core.store.Append(ctx, streamID, a.Version(), out)
		if errors.Is(err, events.ErrVersionConflict) {
			retry, cerr := conflict(meta, streamID, attempt, err)
			if retry {
				continue
			}
			return false, cerr
		}
		if err != nil {
			return false, fmt.Errorf("record asset processed: append to %s: %w", streamID, err)
		}
		if res.StreamID != "" && res.StreamID != streamID {
			return false, fmt.Errorf("record asset processed: events stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
		}
		return true, nil
	}
}
