package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/asset"
	blobfs "github.com/mediamesh/mediamesh/infra/blob/fs"
	blobs3 "github.com/mediamesh/mediamesh/infra/blob/s3"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/imaging"
	"github.com/mediamesh/mediamesh/infra/opscli"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

// blobStore is what this process needs of the blob store: the originals an upload
// writes, the originals and renditions the thumbnail processor reads and writes,
// and /media/ delivery. infra/blob/fs and infra/blob/s3 both implement it.
type blobStore interface {
	app.OriginalStore
	thumbnails.Blobs
	api.MediaStore
}

// ensureBucketTimeout bounds the start-up check (and creation) of the S3 bucket, so
// an unreachable service fails the start instead of hanging it.
const ensureBucketTimeout = 30 * time.Second

// openBlobs returns the configured blob store (MEDIAMESH_BLOB) and its readiness
// check. The filesystem store lives under MEDIAMESH_DATA_DIR/blobs and is ready
// while that directory exists (a volume that went away is a 503, not 404s). The S3
// store creates its bucket when missing (embedded and compose setups; a production
// bucket is usually provisioned beforehand, and then this only checks it): a
// service that cannot be reached fails the start, as the database does; later it is
// /health/ready's "blobs".
func openBlobs(ctx context.Context, cfg config.Config) (blobStore, api.ReadinessCheck, error) {
	switch cfg.Blob {
	case config.BlobFS:
		s, err := blobfs.New(filepath.Join(cfg.DataDir, "blobs"))
		if err != nil {
			return nil, api.ReadinessCheck{}, fmt.Errorf("%s=%s: %w", config.KeyBlob, cfg.Blob, err)
		}
		root := s.Root()
		return s, api.ReadinessCheck{Name: "blobs", Check: func(context.Context) error {
			fi, err := os.Stat(root)
			if err != nil {
				return fmt.Errorf("blob fs: %w", err)
			}
			if !fi.IsDir() {
				return fmt.Errorf("blob fs: %s is not a directory", root)
			}
			return nil
		}}, nil
	case config.BlobS3:
		s, err := blobs3.New(blobs3.Config{
			Endpoint:  cfg.S3.Endpoint,
			Bucket:    cfg.S3.Bucket,
			Region:    cfg.S3.Region,
			AccessKey: cfg.S3.AccessKey,
			SecretKey: cfg.S3.SecretKey.Reveal(),
			PathStyle: cfg.S3.PathStyle,
		})
		if err != nil {
			return nil, api.ReadinessCheck{}, fmt.Errorf("%s=%s: %w", config.KeyBlob, cfg.Blob, err)
		}
		ectx, cancel := context.WithTimeout(ctx, ensureBucketTimeout)
		defer cancel()
		if err := s.EnsureBucket(ectx); err != nil {
			return nil, api.ReadinessCheck{}, fmt.Errorf("%s=%s: %w", config.KeyBlob, cfg.Blob, err)
		}
		return s, api.ReadinessCheck{Name: "blobs", Check: s.Ping}, nil
	}
	return nil, api.ReadinessCheck{}, fmt.Errorf("%s=%s: unknown blob store", config.KeyBlob, cfg.Blob)
}

// assetLimits are the upload limits of cfg: MEDIAMESH_ASSET_BODY_LIMIT bounds the
// file, MEDIAMESH_ASSET_MAX_PIXELS its pixels; the per-side limit keeps asset's
// default.
func assetLimits(cfg config.Config) asset.Limits {
	return asset.Limits{MaxBytes: cfg.AssetBodyLimit, MaxPixels: cfg.AssetMaxPixels}.WithDefaults()
}

// runs reports whether role runs part ("command", "query", "projector", …):
// "all" runs every part.
func runs(role, part string) bool { return role == "all" || role == part }

// assetParts is what newAssets wired: the api's asset routes (nil when role serves
// none) and the blob store's readiness check (empty Name when none was opened).
type assetParts struct {
	routes    *api.Assets
	readiness api.ReadinessCheck
}

// newAssets wires the media assets for role:
//
//   - command (and all): POST /v1/assets, the upload command over the blob store
//     and an Inspector;
//   - query (and all): GET /media/…, delivery from the blob store;
//   - projector (and all): the thumbnail processor, run in the background until the
//     deps close. It tails the event store's global log itself (its own checkpoint
//     and advisory lock), so it runs whatever MEDIAMESH_BUS is.
//
// One Decoder is shared by the upload's Inspector and the processor's Renderer, so
// that in one process at most GOMAXPROCS images are decoded at once, uploads and
// renders together: the memory a burst of large images can take stays bounded.
func newAssets(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger, role string) (assetParts, error) {
	upload, media, process := runs(role, "command"), runs(role, "query"), runs(role, "projector")
	if !upload && !media && !process {
		return assetParts{}, nil
	}
	blobs, ready, err := openBlobs(ctx, cfg)
	if err != nil {
		return assetParts{}, err
	}
	limits := assetLimits(cfg)
	dec := imaging.NewDecoder(limits, 0)
	parts := assetParts{readiness: ready}
	if upload || media {
		parts.routes = &api.Assets{CDNBaseURL: cfg.CDNBaseURL, MaxBytes: limits.MaxBytes}
	}
	if upload {
		inspector, err := imaging.NewInspector(dec)
		if err != nil {
			return assetParts{}, err
		}
		parts.routes.Upload = app.NewUploadAssetHandler(d.store, inspector, blobs, limits)
	}
	if media {
		parts.routes.Media = blobs
	}
	if process {
		proc, err := newThumbnailProcessor(cfg, d, log, blobs, dec)
		if err != nil {
			return assetParts{}, err
		}
		d.background(ctx, log, "thumbnail processor", proc.Run)
		log.Info("thumbnail processor running", "processor", proc.Name(), "blob", string(cfg.Blob), "cdn_purge", cfg.CDNPurgeURL != "")
	}
	return parts, nil
}

// newThumbnailProcessor builds the thumbnail processor on d's event store and pool.
// Purged URLs are those the API hands out: under MEDIAMESH_CDN_BASE_URL, or the
// bare paths /media/… when it is empty (what a CDN in front of this server caches).
func newThumbnailProcessor(cfg config.Config, d *deps, log *slog.Logger, blobs blobStore, dec *imaging.Decoder) (*thumbnails.Processor, error) {
	renderer, err := imaging.NewRenderer(dec, imaging.RenderOptions{})
	if err != nil {
		return nil, err
	}
	purger, err := newPurger(cfg)
	if err != nil {
		return nil, err
	}
	return thumbnails.New(d.pool, thumbnails.Deps{
		Log:      d.store,
		Streams:  d.store,
		Blobs:    blobs,
		Renderer: renderer,
		Recorder: app.NewRecordAssetProcessedHandler(d.store),
		Purger:   purger,
	}, thumbnails.Config{PurgeBaseURL: cfg.CDNBaseURL, Logger: log})
}

// newPurger returns the CDN purge webhook of MEDIAMESH_CDN_PURGE_URL, with
// MEDIAMESH_CDN_PURGE_TOKEN as a bearer token when set, or a nil Purger (no purge)
// when no URL is configured. The nil is an untyped interface value: the processor
// checks Purger against nil, which a nil *WebhookPurger would not be.
func newPurger(cfg config.Config) (thumbnails.Purger, error) {
	if cfg.CDNPurgeURL == "" {
		return nil, nil
	}
	var header http.Header
	if tok := cfg.CDNPurgeToken.Reveal(); tok != "" {
		header = http.Header{"Authorization": {"Bearer " + tok}}
	}
	w, err := thumbnails.NewWebhookPurger(cfg.CDNPurgeURL, thumbnails.WebhookOptions{Header: header})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.KeyCDNPurgeURL, err)
	}
	return w, nil
}

// thumbnailsAdmin is the projections CLI's opscli.Admin with one addition:
// `projections dlq replay thumbnails` is done by a thumbnail processor built here
// (thumbnails.Processor.Replay), because the projection manager only lists the
// processor (status, dead letters) and cannot re-run its side effects. The replay
// is safe beside a running processor: both lock each asset while they work on it.
type thumbnailsAdmin struct {
	opscli.Admin
	replay func(ctx context.Context) (runtime.ReplayResult, error)
}

// withThumbnails returns admin with the thumbnail processor's replay (see
// thumbnailsAdmin); e's configuration is loaded only when that replay runs.
func withThumbnails(admin opscli.Admin, e env) opscli.Admin {
	return thumbnailsAdmin{Admin: admin, replay: func(ctx context.Context) (runtime.ReplayResult, error) {
		cfg, log, err := setup(e)
		if err != nil {
			return runtime.ReplayResult{}, err
		}
		d, err := openDeps(ctx, cfg, log)
		if err != nil {
			return runtime.ReplayResult{}, err
		}
		defer d.close()
		blobs, _, err := openBlobs(ctx, cfg)
		if err != nil {
			return runtime.ReplayResult{}, err
		}
		proc, err := newThumbnailProcessor(cfg, d, log, blobs, imaging.NewDecoder(assetLimits(cfg), 0))
		if err != nil {
			return runtime.ReplayResult{}, err
		}
		return proc.Replay(ctx)
	}}
}

// Replay replays the thumbnail processor's dead letters itself and passes any
// other name on.
func (a thumbnailsAdmin) Replay(ctx context.Context, name string) (runtime.ReplayResult, error) {
	if name == thumbnails.DefaultName {
		return a.replay(ctx)
	}
	return a.Admin.Replay(ctx, name)
}
