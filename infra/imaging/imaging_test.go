package imaging_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
	"time"

	"golang.org/x/image/webp"

	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/infra/imaging"
	"github.com/mediamesh/mediamesh/infra/imaging/imagingtest"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

func newDecoder() *imaging.Decoder { return imaging.NewDecoder(asset.Limits{}, 0) }

func TestInspect(t *testing.T) {
	t.Parallel()
	ins, err := imaging.NewInspector(newDecoder())
	if err != nil {
		t.Fatal(err)
	}
	jpg := imagingtest.JPEG(t, 300, 200)
	tests := []struct {
		name    string
		data    []byte
		wantCT  string
		wantW   int
		wantH   int
		wantErr error
	}{
		{"jpeg", jpg, "image/jpeg", 300, 200, nil},
		{"png", imagingtest.PNG(t, 64, 48, nil), "image/png", 64, 48, nil},
		{"webp", imagingtest.WebP(t, 50, 70), "image/webp", 50, 70, nil},
		{"text renamed .jpg", imagingtest.Text(), "", 0, 0, asset.ErrUnsupportedImage},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "", 0, 0, asset.ErrUnsupportedImage},
		{"empty", nil, "", 0, 0, asset.ErrUnsupportedImage},
		{"truncated png", imagingtest.TruncatedPNG(t), "", 0, 0, asset.ErrCorruptImage},
		{"truncated jpeg", jpg[:len(jpg)/2], "", 0, 0, asset.ErrCorruptImage},
		{"jpeg magic only", []byte("\xff\xd8\xff\xe0 nothing else"), "", 0, 0, asset.ErrCorruptImage},
		{"50,000 × 50,000 header", imagingtest.BombPNG(50_000, 50_000), "", 0, 0, asset.ErrImageTooLarge},
		{"41 megapixels", imagingtest.BombPNG(6500, 6400), "", 0, 0, asset.ErrImageTooLarge},
		{"one side too long", imagingtest.BombPNG(20_001, 10), "", 0, 0, asset.ErrImageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			img, err := ins.Inspect(context.Background(), tc.data)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if errors.Is(err, asset.ErrImageTooLarge) && time.Since(start) > time.Second {
					t.Fatalf("rejecting a bomb took %v: it was decoded", time.Since(start))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tc.data)
			want := asset.Image{ContentType: tc.wantCT, Width: tc.wantW, Height: tc.wantH, Bytes: int64(len(tc.data)), SHA256: hex.EncodeToString(sum[:])}
			if img != want {
				t.Fatalf("inspect = %+v, want %+v", img, want)
			}
		})
	}
}

func TestInspectByteLimit(t *testing.T) {
	t.Parallel()
	ins, _ := imaging.NewInspector(imaging.NewDecoder(asset.Limits{MaxBytes: 1000}, 1))
	if _, err := ins.Inspect(context.Background(), imagingtest.JPEG(t, 200, 200)); !errors.Is(err, asset.ErrImageTooLarge) {
		t.Fatalf("err = %v, want ErrImageTooLarge", err)
	}
}

// decoded decodes a rendition with the decoder of its claimed format.
func decoded(t *testing.T, r thumbnails.Rendition) image.Image {
	t.Helper()
	var img image.Image
	var err error
	switch r.Format {
	case "jpeg":
		img, err = jpeg.Decode(bytes.NewReader(r.Data))
	case "webp":
		img, err = webp.Decode(bytes.NewReader(r.Data))
	default:
		t.Fatalf("format %q", r.Format)
	}
	if err != nil {
		t.Fatalf("%s %s does not decode: %v", r.Size, r.Format, err)
	}
	if ct, err := imaging.Sniff(r.Data); err != nil || ct != r.ContentType {
		t.Fatalf("%s %s sniffs as %q (%v), claims %q", r.Size, r.Format, ct, err, r.ContentType)
	}
	return img
}

// testSizes are the default sizes scaled down by ten: the same steps (a first
// shrink by less than 2×, then by 2× or more) on originals a hundredth the pixels,
// which keeps the race detector's cost down. One case still runs DefaultSizes.
var testSizes = []thumbnails.Size{{Name: "small", Width: 16}, {Name: "medium", Width: 48}, {Name: "large", Width: 128}}

// TestRenderSizesAndFormats renders every size in both formats. The WebP encoder's
// WebAssembly module compiles once per test binary, whichever test encodes first
// (seconds under the race detector); the small originals keep each encode after
// that cheap.
func TestRenderSizesAndFormats(t *testing.T) {
	t.Parallel()
	r, err := imaging.NewRenderer(newDecoder(), imaging.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type dims struct{ w, h int }
	tests := []struct {
		name     string
		original []byte
		sizes    []thumbnails.Size
		want     map[string]dims
	}{
		{"portrait jpeg 140×210", imagingtest.JPEG(t, 140, 210), testSizes, map[string]dims{"small": {16, 24}, "medium": {48, 72}, "large": {128, 192}}},
		{"landscape png 192×108", imagingtest.PNG(t, 192, 108, nil), testSizes, map[string]dims{"small": {16, 9}, "medium": {48, 27}, "large": {128, 72}}},
		{"small webp is never upscaled", imagingtest.WebP(t, 30, 10), testSizes, map[string]dims{"small": {16, 5}, "medium": {30, 10}, "large": {30, 10}}},
		{"tiny", imagingtest.PNG(t, 1, 1, nil), testSizes, map[string]dims{"small": {1, 1}, "medium": {1, 1}, "large": {1, 1}}},
		{"very wide keeps 1 px", imagingtest.PNG(t, 400, 2, nil), testSizes, map[string]dims{"small": {16, 1}, "medium": {48, 1}, "large": {128, 1}}},
		{"default sizes, wide jpeg 1300×20", imagingtest.JPEG(t, 1300, 20), thumbnails.DefaultSizes(), map[string]dims{"small": {160, 2}, "medium": {480, 7}, "large": {1280, 20}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := r.Render(context.Background(), tc.original, tc.sizes)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 6 {
				t.Fatalf("%d renditions, want 3 sizes × 2 formats", len(out))
			}
			seen := map[string]bool{}
			for _, rd := range out {
				seen[rd.Size+"/"+rd.Format] = true
				want := tc.want[rd.Size]
				img := decoded(t, rd)
				if b := img.Bounds(); rd.Width != want.w || rd.Height != want.h || b.Dx() != want.w || b.Dy() != want.h {
					t.Errorf("%s %s: claims %d×%d, decodes %d×%d, want %d×%d", rd.Size, rd.Format, rd.Width, rd.Height, b.Dx(), b.Dy(), want.w, want.h)
				}
			}
			for _, s := range []string{"small", "medium", "large"} {
				for _, f := range []string{"jpeg", "webp"} {
					if !seen[s+"/"+f] {
						t.Errorf("no %s %s rendition", s, f)
					}
				}
			}
		})
	}
}

func TestRenderJPEGOnly(t *testing.T) {
	t.Parallel()
	r, _ := imaging.NewRenderer(newDecoder(), imaging.RenderOptions{NoWebP: true})
	out, err := r.Render(context.Background(), imagingtest.JPEG(t, 100, 100), testSizes)
	if err != nil || len(out) != 3 {
		t.Fatalf("%d renditions, %v; want 3 JPEGs", len(out), err)
	}
	for _, rd := range out {
		if rd.Format != "jpeg" {
			t.Fatalf("format %s", rd.Format)
		}
	}
}

// TestRenderAlpha: JPEG has no alpha, so transparency becomes white; WebP keeps it.
func TestRenderAlpha(t *testing.T) {
	t.Parallel()
	src := image.NewNRGBA(image.Rect(0, 0, 200, 100))
	for y := 0; y < 100; y++ {
		for x := 0; x < 200; x++ {
			if x < 100 {
				src.SetNRGBA(x, y, color.NRGBA{R: 200, A: 255})
			} // the right half stays fully transparent
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	r, _ := imaging.NewRenderer(newDecoder(), imaging.RenderOptions{})
	out, err := r.Render(context.Background(), buf.Bytes(), []thumbnails.Size{{Name: "small", Width: 100}})
	if err != nil {
		t.Fatal(err)
	}
	for _, rd := range out {
		img := decoded(t, rd)
		cr, cg, cb, ca := img.At(90, 25).RGBA()
		switch rd.Format {
		case "jpeg":
			if ca != 0xffff || cr < 0xf000 || cg < 0xf000 || cb < 0xf000 {
				t.Errorf("jpeg: transparent pixel is %x %x %x %x, want white", cr, cg, cb, ca)
			}
		case "webp":
			if ca > 0x1000 {
				t.Errorf("webp: transparent pixel has alpha %x", ca)
			}
		}
	}
}

// TestRenderOrientation: a JPEG stored sideways with EXIF orientation 6 (rotate 90°
// clockwise) comes out upright: taller than wide, its left half on top.
func TestRenderOrientation(t *testing.T) {
	t.Parallel()
	src := image.NewRGBA(image.Rect(0, 0, 200, 100))
	for y := 0; y < 100; y++ {
		for x := 0; x < 200; x++ {
			c := color.RGBA{B: 220, A: 255}
			if x < 100 {
				c = color.RGBA{R: 220, A: 255}
			}
			src.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		orientation uint16
		w, h        int
		topRed      bool
	}{
		{1, 80, 40, false},
		{6, 80, 160, true},  // rotate 90° clockwise: the left (red) half goes on top
		{8, 80, 160, false}, // rotate 90° counter-clockwise: the right (blue) half goes on top
		{3, 80, 40, false},  // rotate 180°: red ends on the right
	}
	r, _ := imaging.NewRenderer(newDecoder(), imaging.RenderOptions{NoWebP: true})
	for _, tc := range tests {
		out, err := r.Render(context.Background(), imagingtest.WithOrientation(buf.Bytes(), tc.orientation), []thumbnails.Size{{Name: "small", Width: 80}})
		if err != nil {
			t.Fatal(err)
		}
		img := decoded(t, out[0])
		if b := img.Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
			t.Fatalf("orientation %d: %d×%d, want %d×%d", tc.orientation, b.Dx(), b.Dy(), tc.w, tc.h)
		}
		red := func(x, y int) bool {
			cr, _, cb, _ := img.At(x, y).RGBA()
			return cr > cb
		}
		switch tc.orientation {
		case 6, 8:
			if red(40, 10) != tc.topRed || red(40, 150) == tc.topRed {
				t.Errorf("orientation %d: top red %v, want %v", tc.orientation, red(40, 10), tc.topRed)
			}
		case 1:
			if !red(5, 20) || red(75, 20) {
				t.Errorf("orientation 1 changed the image")
			}
		case 3:
			if red(5, 20) || !red(75, 20) {
				t.Errorf("orientation 3 not rotated")
			}
		}
	}
}

func TestRenderBadOriginalIsPermanent(t *testing.T) {
	t.Parallel()
	r, _ := imaging.NewRenderer(newDecoder(), imaging.RenderOptions{})
	for name, data := range map[string][]byte{
		"text":      imagingtest.Text(),
		"truncated": imagingtest.TruncatedPNG(t),
		"bomb":      imagingtest.BombPNG(50_000, 50_000),
	} {
		if _, err := r.Render(context.Background(), data, thumbnails.DefaultSizes()); !errors.Is(err, thumbnails.ErrBadImage) {
			t.Errorf("%s: err = %v, want ErrBadImage", name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Render(ctx, imagingtest.JPEG(t, 100, 100), testSizes); !errors.Is(err, context.Canceled) || errors.Is(err, thumbnails.ErrBadImage) {
		t.Errorf("cancelled: err = %v, want context.Canceled and not ErrBadImage", err)
	}
}
