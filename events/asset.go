package events

// Stored type names of the asset events (artwork of programs and episodes).
//
// An asset is one artwork slot — the poster, thumbnail or backdrop of one program or
// one episode — with its own stream "asset-{asset_id}". Uploading an image to a slot
// that already has one replaces it: a second AssetUploaded on the same stream. The
// slot's pointer stream (AssetSlotStreamID) names the asset id, so a slot resolves to
// its asset from the event store alone, without a race.
const (
	// TypeAssetSlotAssigned is the only event of a slot's pointer stream: it names
	// the asset that holds the slot. Appended with ExpectNoStream by the first upload
	// to the slot; the pointer never changes.
	TypeAssetSlotAssigned = "mediamesh.asset.slot_assigned.v1"
	// TypeAssetUploaded records a stored original image on the asset's stream.
	TypeAssetUploaded = "mediamesh.asset.uploaded.v1"
	// TypeAssetProcessed records the renditions the thumbnail processor generated
	// for one upload (and the CDN purge it made for a replaced image). The processor
	// writes it once per upload; rebuilding a projection never re-runs it.
	TypeAssetProcessed = "mediamesh.asset.processed.v1"
)

// Asset kinds: the slot an image fills.
const (
	AssetKindPoster    = "poster"
	AssetKindThumbnail = "thumbnail"
	AssetKindBackdrop  = "backdrop"
)

// Rendition sizes, by name. Their pixel widths are the processor's configuration
// (160, 480 and 1280 by default); AssetProcessed records the actual dimensions.
const (
	AssetSizeSmall  = "small"
	AssetSizeMedium = "medium"
	AssetSizeLarge  = "large"
)

// Rendition formats and their key extensions.
const (
	AssetFormatJPEG = "jpeg"
	AssetFormatWebP = "webp"
)

// AssetStreamID is the stream of one asset.
func AssetStreamID(assetID string) string { return "asset-" + assetID }

// AssetSlotStreamID is the pointer stream of a slot: the kind of artwork of a program
// (episodeID empty) or of an episode. Program and episode ids are UUIDs, so the two
// kinds of owners cannot collide; the owner's kind is spelled out anyway.
func AssetSlotStreamID(programID, episodeID, kind string) string {
	if episodeID != "" {
		return "assetslot-episode-" + episodeID + "-" + kind
	}
	return "assetslot-program-" + programID + "-" + kind
}

// AssetOriginalKey is the blob key of an uploaded original: content-addressed by the
// hex SHA-256 of its bytes, so the same image is stored once and a key's content never
// changes (it may be cached forever).
func AssetOriginalKey(sha256Hex, ext string) string { return "originals/" + sha256Hex + "." + ext }

// AssetRenditionKey is the blob key of one generated size of an asset. It is stable
// per asset: a replaced image's renditions are written over the old ones under the
// same keys (which is why they are cached for 30 days, not forever, and why the
// processor purges them from the CDN on a replacement).
func AssetRenditionKey(assetID, size, format string) string {
	ext := "jpg"
	if format == AssetFormatWebP {
		ext = "webp"
	}
	return "assets/" + assetID + "/" + size + "." + ext
}

// AssetSlotAssigned points a slot at the asset that holds it.
type AssetSlotAssigned struct {
	AssetID   string `json:"asset_id"`
	ProgramID string `json:"program_id"`
	// EpisodeID is empty for a program's own artwork.
	EpisodeID string `json:"episode_id,omitempty"`
	Kind      string `json:"kind"`
}

// AssetUploaded records an original image, already stored under OriginalKey, as the
// asset's current image. ProgramID is always set (an episode's program, resolved
// when the image was uploaded); EpisodeID only for an episode's artwork. The image
// facts were read from the bytes, never from a file name or a client's header.
type AssetUploaded struct {
	AssetID     string `json:"asset_id"`
	ProgramID   string `json:"program_id"`
	EpisodeID   string `json:"episode_id,omitempty"`
	Kind        string `json:"kind"`
	OriginalKey string `json:"original_key"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"`
}

// AssetRendition is one generated image: a size in one format.
type AssetRendition struct {
	Size        string `json:"size"`
	Format      string `json:"format"`
	Key         string `json:"key"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Bytes       int64  `json:"bytes"`
}

// AssetProcessed records the renditions generated from one upload of the asset:
// the AssetUploaded at stream version UploadVersion, whose original has SHA256. A
// reader applies it only while that upload is the asset's current one (a newer
// upload may have been appended in between).
//
// PurgedURLs are the URLs the processor asked the CDN to purge because a replaced
// image changed what they serve; PurgeError is set when the purge still failed after
// its retries (the renditions are stored all the same).
type AssetProcessed struct {
	AssetID       string           `json:"asset_id"`
	ProgramID     string           `json:"program_id"`
	EpisodeID     string           `json:"episode_id,omitempty"`
	Kind          string           `json:"kind"`
	UploadVersion int64            `json:"upload_version"`
	SHA256        string           `json:"sha256"`
	OriginalKey   string           `json:"original_key"`
	Renditions    []AssetRendition `json:"renditions"`
	PurgedURLs    []string         `json:"purged_urls,omitempty"`
	PurgeError    string           `json:"purge_error,omitempty"`
}

// EventType implements Event.
func (AssetSlotAssigned) EventType() string { return TypeAssetSlotAssigned }

// EventType implements Event.
func (AssetUploaded) EventType() string { return TypeAssetUploaded }

// EventType implements Event.
func (AssetProcessed) EventType() string { return TypeAssetProcessed }
