// Package imaging reads, checks, resizes and encodes images for MediaMesh's assets:
// the upload's inspection (Inspector, command/app.ImageInspector) and the thumbnail
// processor's renditions (Renderer, projections/thumbnails.Renderer).
//
// Decisions:
//   - The type is decided by the bytes (http.DetectContentType's magic numbers),
//     never by a file name or a client's Content-Type, and only JPEG, PNG and WebP
//     are accepted. The format's own decoder is then called directly: nothing goes
//     through image.Decode's global registry.
//   - Decompression bombs: the header is read first (DecodeConfig) and the
//     dimensions checked against asset.Limits (40 megapixels, 20,000 px a side by
//     default) before a single pixel is decoded. Full decodes run under a semaphore
//     (GOMAXPROCS of them at once by default), bounding the memory that concurrent
//     uploads and renders can take.
//   - An upload is decoded in full once: a truncated or damaged file fails then,
//     with a 4xx, instead of in the processor later.
//   - JPEG EXIF orientation is applied before resizing, so renditions stand upright
//     (AssetUploaded records the stored, unrotated dimensions, which are what the
//     limits apply to).
//   - Resizing uses golang.org/x/image/draw's Catmull-Rom kernel, large first and
//     each smaller size from the next larger one: every step shrinks by a small
//     factor, which keeps the kernel narrow (fast) and the result sharp.
//   - JPEG renditions have no alpha: transparent originals are flattened onto white.
//     WebP renditions (github.com/gen2brain/webp: libwebp compiled to WebAssembly and
//     run by wazero, pure Go, no cgo) keep the alpha channel.
package imaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"runtime"

	"golang.org/x/image/webp"

	"github.com/mediamesh/mediamesh/command/asset"
)

// Sniff returns the content type of an accepted image from its first bytes, or an
// error wrapping asset.ErrUnsupportedImage.
func Sniff(data []byte) (string, error) {
	ct := http.DetectContentType(data)
	switch ct {
	case asset.ContentTypeJPEG, asset.ContentTypePNG, asset.ContentTypeWebP:
		return ct, nil
	}
	what := ct
	if i := bytes.IndexByte([]byte(ct), ';'); i >= 0 {
		what = ct[:i]
	}
	return "", fmt.Errorf("the file is %s, not a JPEG, PNG or WebP image: %w", what, asset.ErrUnsupportedImage)
}

// decodeConfig reads the header of an image of type ct.
func decodeConfig(data []byte, ct string) (image.Config, error) {
	r := bytes.NewReader(data)
	switch ct {
	case asset.ContentTypeJPEG:
		return jpeg.DecodeConfig(r)
	case asset.ContentTypePNG:
		return png.DecodeConfig(r)
	case asset.ContentTypeWebP:
		return webp.DecodeConfig(r)
	}
	return image.Config{}, asset.ErrUnsupportedImage
}

func decodeImage(data []byte, ct string) (image.Image, error) {
	r := bytes.NewReader(data)
	switch ct {
	case asset.ContentTypeJPEG:
		return jpeg.Decode(r)
	case asset.ContentTypePNG:
		return png.Decode(r)
	case asset.ContentTypeWebP:
		return webp.Decode(r)
	}
	return nil, asset.ErrUnsupportedImage
}

// header sniffs data and checks its header against limits: the type, the
// dimensions and the byte size, all before decoding any pixel.
func header(data []byte, limits asset.Limits) (string, image.Config, error) {
	limits = limits.WithDefaults()
	if int64(len(data)) > limits.MaxBytes {
		return "", image.Config{}, fmt.Errorf("the file has %d bytes; at most %d are accepted: %w", len(data), limits.MaxBytes, asset.ErrImageTooLarge)
	}
	ct, err := Sniff(data)
	if err != nil {
		return "", image.Config{}, err
	}
	cfg, err := decodeConfig(data, ct)
	if err != nil {
		return "", image.Config{}, fmt.Errorf("the %s header does not decode (%v): %w", ct, err, asset.ErrCorruptImage)
	}
	if err := limits.CheckDimensions(cfg.Width, cfg.Height); err != nil {
		return "", image.Config{}, err
	}
	return ct, cfg, nil
}

// Decoder decodes checked images, at most a fixed number at once. Inspector and
// Renderer share one when they run in one process.
type Decoder struct {
	limits asset.Limits
	sem    chan struct{}
}

// NewDecoder returns a decoder enforcing limits, decoding at most concurrent images
// at once (GOMAXPROCS when ≤ 0).
func NewDecoder(limits asset.Limits, concurrent int) *Decoder {
	if concurrent <= 0 {
		concurrent = runtime.GOMAXPROCS(0)
	}
	return &Decoder{limits: limits.WithDefaults(), sem: make(chan struct{}, concurrent)}
}

// Limits are the decoder's limits (defaults filled in).
func (d *Decoder) Limits() asset.Limits { return d.limits }

// Decode checks data's type and header against the limits, then decodes it. Errors
// wrap asset.ErrUnsupportedImage, ErrImageTooLarge or ErrCorruptImage, or are the
// context's.
func (d *Decoder) Decode(ctx context.Context, data []byte) (image.Image, string, error) {
	ct, cfg, err := header(data, d.limits)
	if err != nil {
		return nil, "", err
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, "", fmt.Errorf("wait to decode: %w", ctx.Err())
	}
	defer func() { <-d.sem }()
	img, err := decodeImage(data, ct)
	if err != nil {
		return nil, "", fmt.Errorf("the %s image does not decode (%v): %w", ct, err, asset.ErrCorruptImage)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, "", fmt.Errorf("the %s image is %d × %d, its header says %d × %d: %w", ct, b.Dx(), b.Dy(), cfg.Width, cfg.Height, asset.ErrCorruptImage)
	}
	return img, ct, nil
}

// Inspector inspects uploads (command/app.ImageInspector).
type Inspector struct {
	dec *Decoder
}

// NewInspector returns an inspector that decodes with dec.
func NewInspector(dec *Decoder) (*Inspector, error) {
	if dec == nil {
		return nil, errors.New("imaging: nil decoder")
	}
	return &Inspector{dec: dec}, nil
}

// Inspect reads an upload's type and dimensions from its bytes, checks them against
// the limits, decodes it in full to prove it is whole, and hashes it.
func (i *Inspector) Inspect(ctx context.Context, data []byte) (asset.Image, error) {
	img, ct, err := i.dec.Decode(ctx, data)
	if err != nil {
		return asset.Image{}, err
	}
	sum := sha256.Sum256(data)
	b := img.Bounds()
	return asset.Image{ContentType: ct, Width: b.Dx(), Height: b.Dy(), Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// opaque reports whether every pixel of img is opaque, cheaply for the types the
// decoders return.
func opaque(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	switch img.ColorModel() {
	case color.YCbCrModel, color.GrayModel, color.Gray16Model, color.CMYKModel:
		return true
	}
	return false
}
