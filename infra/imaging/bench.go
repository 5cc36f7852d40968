package imaging

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"runtime"

	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

// Size of the benchmark's original (the 2,000 × 3,000 JPEG).
const (
	benchWidth  = 2000
	benchHeight = 3000
)

// BenchThumbnails is `mediamesh bench assets`: thumbnails generated per second from
// a generated 2,000 × 3,000 JPEG, by load.Concurrency workers rendering the default
// sizes (160, 480, 1280 px) as JPEG and WebP, exactly as the thumbnail processor
// does (decode with the limit checks, orient, resize, encode). The unit is one
// thumbnail (one size in one format: six per original); blob writes and events are
// not included, they are the store's cost, not the imaging's. The result is named
// "thumbnails"; its notes give the originals per second and the per-original
// latency percentiles are those of whole renders.
func BenchThumbnails(ctx context.Context, load bench.Load, opts RenderOptions) (bench.Result, error) {
	src, err := benchJPEG(benchWidth, benchHeight)
	if err != nil {
		return bench.Result{}, err
	}
	dec := NewDecoder(asset.Limits{}, max(load.Concurrency, runtime.GOMAXPROCS(0)))
	r, err := NewRenderer(dec, opts)
	if err != nil {
		return bench.Result{}, err
	}
	sizes := thumbnails.DefaultSizes()
	warm, err := r.Render(ctx, src, sizes) // also compiles the WebP encoder's module
	if err != nil {
		return bench.Result{}, fmt.Errorf("bench thumbnails: %w", err)
	}
	perOriginal := len(warm)
	stats := bench.Run(ctx, load, func(ctx context.Context, _ int) (int, error) {
		out, err := r.Render(ctx, src, sizes)
		return len(out), err
	})
	res := bench.Measure("thumbnails", "thumbnails", stats)
	originals := 0.0
	if stats.Elapsed > 0 {
		originals = float64(stats.Ops) / stats.Elapsed.Seconds()
	}
	res.AddNote(fmt.Sprintf("%d thumbnails per %d×%d JPEG original (%d sizes × JPEG%s); %.2f originals/s; latencies are per original",
		perOriginal, benchWidth, benchHeight, len(sizes), map[bool]string{true: "", false: " and WebP"}[opts.NoWebP], originals))
	return res, nil
}

// benchJPEG makes a w × h photo-like JPEG: smooth gradients with some texture, so the
// decoder, the scaler and the encoders have realistic work.
func benchJPEG(w, h int) ([]byte, error) {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r := uint8(x * 255 / w)
			g := uint8(y * 255 / h)
			b := uint8((x*7 + y*13) ^ (x * y >> 6))
			yy, cb, cr := color.RGBToYCbCr(r, g, b)
			img.Y[img.YOffset(x, y)] = yy
			if x%2 == 0 && y%2 == 0 {
				ci := img.COffset(x, y)
				img.Cb[ci], img.Cr[ci] = cb, cr
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		return nil, fmt.Errorf("bench thumbnails: encode original: %w", err)
	}
	return buf.Bytes(), nil
}
