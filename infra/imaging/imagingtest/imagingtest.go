// Package imagingtest makes test images: generated JPEG, PNG and WebP files of a
// given size, and the bad uploads of the asset tests (a text file, a truncated PNG,
// a PNG header claiming 50,000 × 50,000 pixels). Tests of the imaging package, the
// upload handler, the processor and the HTTP API share it.
package imagingtest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	webpenc "github.com/gen2brain/webp"
)

// Pattern returns a w × h image with smooth gradients and a few hard edges, so
// encoders and scalers have real work (a flat colour would compress to nothing).
func Pattern(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{R: uint8(x * 255 / max(w-1, 1)), G: uint8(y * 255 / max(h-1, 1)), B: uint8((x ^ y) & 0xff), A: 255}
			if (x/64+y/64)%2 == 0 {
				c.B = 255 - c.B
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

// JPEG returns a w × h JPEG.
func JPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, Pattern(w, h), &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// PNG returns a w × h PNG of img or, when img is nil, of Pattern.
func PNG(t testing.TB, w, h int, img image.Image) []byte {
	t.Helper()
	if img == nil {
		img = Pattern(w, h)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// WebP returns a w × h lossy WebP.
func WebP(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := webpenc.Encode(&buf, Pattern(w, h), webpenc.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Text is a text file, as someone renames notes.txt to poster.jpg.
func Text() []byte {
	return []byte("These are my notes, not a poster.\nLine two.\n")
}

// TruncatedPNG is a valid PNG cut in the middle of its image data: its header
// decodes, its pixels do not.
func TruncatedPNG(t testing.TB) []byte {
	t.Helper()
	full := PNG(t, 300, 200, nil)
	return full[:len(full)/2]
}

// BombPNG is a PNG whose header claims w × h pixels (with a valid CRC) followed by
// a tiny, unrelated data chunk: what a decompression bomb looks like to a header
// check. Nothing may decode it.
func BombPNG(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		buf.Write(n[:])
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		buf.WriteString(typ)
		buf.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		buf.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return buf.Bytes()
}

// WithOrientation inserts an EXIF APP1 segment with orientation o right after a
// JPEG's SOI marker.
func WithOrientation(jpg []byte, o uint16) []byte {
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
		0x01, 0x12, 0, 3, 0, 0, 0, 1, byte(o >> 8), byte(o), 0, 0,
		0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}
