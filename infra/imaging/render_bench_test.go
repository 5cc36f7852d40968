package imaging_test

import (
	"context"
	"testing"

	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/infra/imaging"
	"github.com/mediamesh/mediamesh/infra/imaging/imagingtest"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

// BenchmarkRender renders the three default sizes of a 2000 × 3000 JPEG in JPEG and
// WebP (the `mediamesh bench assets` workload, one original per operation).
func BenchmarkRender(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts imaging.RenderOptions
	}{{"jpeg+webp", imaging.RenderOptions{}}, {"jpeg", imaging.RenderOptions{NoWebP: true}}} {
		b.Run(tc.name, func(b *testing.B) {
			r, _ := imaging.NewRenderer(imaging.NewDecoder(asset.Limits{}, 0), tc.opts)
			src := imagingtest.JPEG(b, 2000, 3000)
			for b.Loop() {
				if _, err := r.Render(context.Background(), src, thumbnails.DefaultSizes()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
