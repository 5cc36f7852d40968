package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/blob"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/imaging"
)

// Demo artwork: `mediamesh seed` gives every demo program a poster, so that the
// demo's programs show images whose URLs load.
//
// Decisions:
//
//   - The posters are generated, not shipped: a 600 × 900 JPEG per program, two
//     colours of a fixed palette in a diagonal gradient with a few bands and a
//     disc, chosen by the program's index (no text, nothing copyrighted). The same
//     index gives the same bytes, so the content-hashed original is the same on
//     every run, and uploading it again changes nothing (the upload command
//     appends nothing for the image a slot already shows): seeding stays
//     idempotent.
//   - They go through the same use case as POST /v1/assets (app.UploadAssetHandler:
//     inspection, the blob store, AssetUploaded), so the demo exercises the real
//     path; the renditions come from the thumbnail processor of `serve`, and until
//     then the catalog shows the original in every size.
//   - Uploads run on GOMAXPROCS workers; `--artwork=false` skips them (for a very
//     large seed, where encoding and storing a poster per program is what takes
//     the time).

// demoArtworkWidth and demoArtworkHeight are the demo posters' size (2:3).
const (
	demoArtworkWidth  = 600
	demoArtworkHeight = 900
)

// demoPalette are the demo posters' colours.
var demoPalette = []color.NRGBA{
	{0x1b, 0x26, 0x3b, 0xff}, {0x41, 0x5a, 0x77, 0xff}, {0xe0, 0x7a, 0x5f, 0xff}, {0x3d, 0x40, 0x5b, 0xff},
	{0x81, 0xb2, 0x9a, 0xff}, {0xf2, 0xcc, 0x8f, 0xff}, {0x26, 0x46, 0x53, 0xff}, {0x2a, 0x9d, 0x8f, 0xff},
	{0xe9, 0xc4, 0x6a, 0xff}, {0xf4, 0xa2, 0x61, 0xff}, {0xe7, 0x6f, 0x51, 0xff}, {0x6d, 0x59, 0x7a, 0xff},
}

// demoArtwork returns the w × h JPEG poster of demo program i.
func demoArtwork(i, w, h int) []byte { return demoArtworkVariant(i, w, h, 0) }

// demoArtworkVariant is demoArtwork with variant > 0 marking the poster with a
// small square in a corner, so that its bytes differ (see seedPoster).
func demoArtworkVariant(i, w, h, variant int) []byte {
	n := len(demoPalette)
	from, to := demoPalette[i%n], demoPalette[(i/n+i*5+3)%n]
	if from == to {
		to = demoPalette[(i+n/2)%n]
	}
	accent := demoPalette[(i*7+1)%n]
	bands := 3 + i%4
	cx, cy, r := w/2+(i%5-2)*w/10, h/3+(i%3)*h/10, w/4+(i%4)*w/20
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	mix := func(a, b uint8, t float64) uint8 { return uint8(float64(a) + (float64(b)-float64(a))*t) }
	for y := range h {
		for x := range w {
			t := float64(x+y) / float64(w+h)
			c := color.NRGBA{mix(from.R, to.R, t), mix(from.G, to.G, t), mix(from.B, to.B, t), 0xff}
			if ((x+2*y)*bands/(w+2*h))%2 == 1 { // diagonal bands, a shade darker
				c.R, c.G, c.B = c.R-c.R/8, c.G-c.G/8, c.B-c.B/8
			}
			if dx, dy := x-cx, y-cy; dx*dx+dy*dy < r*r {
				c = color.NRGBA{mix(c.R, accent.R, 0.75), mix(c.G, accent.G, 0.75), mix(c.B, accent.B, 0.75), 0xff}
			}
			if variant > 0 && x < 8*variant && y < 8 {
				c = color.NRGBA{0xff, 0xff, 0xff, 0xff}
			}
			o := y*img.Stride + 4*x
			img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = c.R, c.G, c.B, c.A
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		panic(err) // encoding to memory does not fail
	}
	return buf.Bytes()
}

// seedArtwork uploads the poster of each of the first n demo programs through the
// upload use case, and returns how many uploads changed a poster.
func seedArtwork(ctx context.Context, cfg config.Config, log *slog.Logger, n int) (int, error) {
	start := time.Now()
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return 0, err
	}
	defer d.close()
	blobs, _, err := openBlobs(ctx, cfg)
	if err != nil {
		return 0, err
	}
	limits := assetLimits(cfg)
	inspector, err := imaging.NewInspector(imaging.NewDecoder(limits, 0))
	if err != nil {
		return 0, err
	}
	upload := app.NewUploadAssetHandler(d.store, inspector, blobs, limits)
	codec := events.NewCodec()

	var (
		next, changed atomic.Int64
		wg            sync.WaitGroup
		mu            sync.Mutex
		errs          []error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(goruntime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				ok, err := seedPoster(ctx, d.store, codec, upload, blobs, i)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
					return
				}
				if ok {
					changed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return int(changed.Load()), fmt.Errorf("seed artwork: %w", err)
	}
	log.Info("seeded demo artwork", "posters", n, "uploaded", changed.Load(), "seconds", time.Since(start).Seconds())
	return int(changed.Load()), nil
}

// seedPoster uploads demo program i's poster; it reports whether the poster
// changed (false when the program already shows it).
//
// The event store and the blob store can part: a database kept while the data
// directory is new (another checkout, a cleaned .mediamesh/). The program then
// shows a poster whose blobs are gone, and uploading the same bytes changes
// nothing. So when the poster is unchanged but its original is missing, a marked
// variant is uploaded instead: a new image for the slot, stored
// and rendered again (the next seed puts the plain poster back, once).
func seedPoster(ctx context.Context, store app.EventStore, codec *events.Codec, upload app.UploadAssetHandler, blobs blobStore, i int) (bool, error) {
	ext := ingest.DemoExternalID(i)
	envs, err := store.ReadStream(ctx, events.ProgramExternalIDStreamID(ext))
	if err != nil {
		return false, fmt.Errorf("demo program %s: %w", ext, err)
	}
	if len(envs) == 0 {
		return false, fmt.Errorf("demo program %s: not ingested", ext)
	}
	ev, err := codec.DecodeEnvelope(envs[0])
	if err != nil {
		return false, fmt.Errorf("demo program %s: %w", ext, err)
	}
	reg, ok := ev.(events.ProgramExternalIDRegistered)
	if !ok {
		return false, fmt.Errorf("demo program %s: pointer stream holds %s", ext, envs[0].Type)
	}
	put := func(variant int) (app.AssetUploadResult, error) {
		res, err := upload.Handle(ctx, app.UploadAsset{
			Meta:      app.Meta{Actor: "seed"},
			Kind:      events.AssetKindPoster,
			ProgramID: reg.ProgramID,
			Data:      demoArtworkVariant(i, demoArtworkWidth, demoArtworkHeight, variant),
		})
		if err != nil {
			return res, fmt.Errorf("demo program %s: upload poster: %w", ext, err)
		}
		return res, nil
	}
	res, err := put(0)
	if err != nil || res.Changed {
		return res.Changed, err
	}
	// The original is stored before its event, so a missing one means the data
	// directory was lost (renditions are made later by the processor: a missing
	// one may only be pending).
	if _, err := blobs.Stat(ctx, res.OriginalKey); errors.Is(err, blob.ErrNotFound) {
		res, err := put(1)
		return res.Changed, err
	} else if err != nil {
		return false, fmt.Errorf("demo program %s: poster %s: %w", ext, res.OriginalKey, err)
	}
	return false, nil
}
