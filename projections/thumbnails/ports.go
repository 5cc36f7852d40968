package thumbnails

import (
	"context"
	"errors"

	"github.com/mediamesh/mediamesh/events"
)

// Size is one rendition size: its name (events.AssetSizeSmall, …) and the largest
// width it may have. Renditions keep the original's aspect ratio and are never
// wider than the original.
type Size struct {
	Name  string
	Width int
}

// DefaultSizes are small, medium and large: 160, 480 and 1280 px wide.
func DefaultSizes() []Size {
	return []Size{{events.AssetSizeSmall, 160}, {events.AssetSizeMedium, 480}, {events.AssetSizeLarge, 1280}}
}

// Rendition is one encoded image a Renderer made.
type Rendition struct {
	// Size is the Size's name, Format events.AssetFormatJPEG or AssetFormatWebP.
	Size, Format, ContentType string
	Width, Height             int
	Data                      []byte
}

// ErrBadImage marks an original that can never be rendered (it does not decode, or
// breaks the pixel limits): the processor dead-letters its upload at once instead of
// retrying it. Renderers wrap it.
var ErrBadImage = errors.New("image cannot be processed")

// Renderer makes the renditions of an original (infra/imaging.Renderer): every size
// in every format it produces, in any order.
type Renderer interface {
	Render(ctx context.Context, original []byte, sizes []Size) ([]Rendition, error)
}

// Blobs is the part of the blob store the processor uses (infra/blob/fs, s3). A
// missing object's error wraps io/fs.ErrNotExist.
type Blobs interface {
	Read(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, data []byte, contentType string) error
}

// Log is the event store's global log (every event store adapter implements it).
type Log interface {
	// Subscribe hands every event with Position > after to handle, in position
	// order and in batches of at most batchSize, until ctx ends or handle fails.
	Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error
	// ReadAll returns at most limit events with Position > after, ascending.
	ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error)
	// HeadPosition is the position of the newest readable event, or 0.
	HeadPosition(ctx context.Context) (int64, error)
}

// Streams reads one stream of the event store (to see an asset's current upload).
type Streams interface {
	// ReadStream returns the stream's events oldest first, or an error wrapping
	// events.ErrStreamNotFound.
	ReadStream(ctx context.Context, streamID string) ([]events.Envelope, error)
}

// Recorder records a processing result on the asset's stream: the write side's
// command (command/app.RecordAssetProcessedHandler implements it). It is
// idempotent: recording the same upload's result again records nothing and returns
// false. causationID is the id of the AssetUploaded event that was processed.
type Recorder interface {
	RecordProcessed(ctx context.Context, result events.AssetProcessed, causationID string) (recorded bool, err error)
}

// Purger asks the CDN to drop cached copies of urls (WebhookPurger). It retries on
// its own and returns the error that remained.
type Purger interface {
	Purge(ctx context.Context, urls []string) error
}
