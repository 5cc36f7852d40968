package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/infra/blob"
)

// MediaStore is what /media/ delivery needs of the blob store (infra/blob/fs, s3).
type MediaStore interface {
	Stat(ctx context.Context, key string) (blob.Info, error)
	Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Info, error)
}

// Cache lifetimes of delivered media. Originals are content-addressed: a key's
// bytes never change, so they are cached for a year and marked immutable.
// Renditions keep their key when their asset's image is replaced, so they are
// cached for 30 days, revalidated with their ETag, and purged from the CDN by the
// thumbnail processor on a replacement.
const (
	CacheControlOriginal  = "public, max-age=31536000, immutable"
	CacheControlRendition = "public, max-age=2592000"
)

var (
	originalFileRE  = regexp.MustCompile(`^[0-9a-f]{64}\.(jpg|png|webp)$`)
	renditionFileRE = regexp.MustCompile(`^(small|medium|large)\.(jpg|webp)$`)
)

// registerMedia serves the stored assets under the keys the write side and the
// thumbnail processor use (events.AssetOriginalKey, AssetRenditionKey). Only
// those two shapes are routed, so nothing else in the blob store can be read
// through them.
func (s *server) registerMedia(f *fiber.App) {
	s.get(f, "/media/originals/:file", func(c *fiber.Ctx) error {
		file := c.Params("file")
		if !originalFileRE.MatchString(file) {
			return errNotFound("no such media")
		}
		return s.serveMedia(c, "originals/"+file, CacheControlOriginal)
	})
	s.get(f, "/media/assets/:asset/:file", func(c *fiber.Ctx) error {
		id, file := c.Params("asset"), c.Params("file")
		if u, err := uuid.Parse(id); err != nil || len(id) != 36 || u.String() != id || !renditionFileRE.MatchString(file) {
			return errNotFound("no such media")
		}
		return s.serveMedia(c, "assets/"+id+"/"+file, CacheControlRendition)
	})
}

// serveMedia sends a blob with a strong ETag (its SHA-256), Last-Modified and
// cacheControl, answering If-None-Match with 304 and a single byte Range with 206
// (416 when it cannot be satisfied; several ranges, or an If-Range that no longer
// matches, get the whole object). Problems are never cached (no-store), so a
// rendition that is not generated yet is asked for again.
func (s *server) serveMedia(c *fiber.Ctx, key, cacheControl string) error {
	ctx := c.UserContext()
	for attempt := 0; ; attempt++ {
		info, err := s.deps.Assets.Media.Stat(ctx, key)
		if err != nil {
			return mediaError(err)
		}
		tag := `"` + info.ETag + `"`
		c.Set(fiber.HeaderETag, tag)
		c.Set(fiber.HeaderCacheControl, cacheControl)
		c.Set(fiber.HeaderLastModified, info.ModTime.UTC().Format(http.TimeFormat))
		c.Set(fiber.HeaderAcceptRanges, "bytes")
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" {
			if etagMatches(inm, tag) {
				c.Status(fiber.StatusNotModified)
				c.Response().SkipBody = true
				return nil
			}
		}
		if c.Method() == fiber.MethodHead {
			c.Set(fiber.HeaderContentType, info.ContentType)
			c.Status(fiber.StatusOK)
			c.Response().SkipBody = true
			c.Response().Header.SetContentLength(int(info.Size))
			return nil
		}
		rng, partial, err := requestedRange(c, tag, info.Size)
		if err != nil {
			return err
		}
		rc, got, err := s.deps.Assets.Media.Get(ctx, key, rng)
		if errors.Is(err, blob.ErrInvalidRange) && attempt == 0 {
			continue // the object was replaced by a shorter one since Stat
		}
		if err != nil {
			return mediaError(err)
		}
		if got.ETag != info.ETag {
			rc.Close()
			if attempt == 0 {
				continue // replaced between Stat and Get: describe the new one
			}
			return errUnavailable("the media changed while it was read; retry")
		}
		// Objects are bounded by the upload limit, and the access log reads the
		// body anyway: read it here rather than stream it.
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("read media %s: %w", key, err)
		}
		c.Set(fiber.HeaderContentType, info.ContentType)
		if partial {
			c.Status(fiber.StatusPartialContent)
			c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", rng.Offset, rng.Offset+rng.Length-1, info.Size))
		} else {
			c.Status(fiber.StatusOK)
		}
		c.Response().SetBodyRaw(data)
		return nil
	}
}

func mediaError(err error) error {
	if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalidKey) {
		return errNotFound("no such media (renditions appear once they are generated)")
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return errors.Join(errUnavailable("the media store is unavailable; retry later"), err)
}

// etagMatches applies If-None-Match's weak comparison: any listed tag equal to tag
// once W/ is removed, or "*".
func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}

// requestedRange reads a Range header against an object of size bytes. It returns
// partial false (the whole object) without a Range, for a Range it does not serve
// partially (several ranges, another unit) and when If-Range does not match; an
// unsatisfiable single range is a 416 with Content-Range: bytes */size.
func requestedRange(c *fiber.Ctx, tag string, size int64) (blob.Range, bool, error) {
	h := strings.TrimSpace(c.Get(fiber.HeaderRange))
	if h == "" || c.Method() != fiber.MethodGet {
		return blob.Range{}, false, nil
	}
	if ir := strings.TrimSpace(c.Get(fiber.HeaderIfRange)); ir != "" && ir != tag {
		return blob.Range{}, false, nil // a date or an old tag: send the current whole object
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return blob.Range{}, false, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return blob.Range{}, false, errRangeNotSatisfiable(size)
	}
	var start, end int64
	switch {
	case first == "": // the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return blob.Range{}, false, errRangeNotSatisfiable(size)
		}
		start, end = max(size-n, 0), size-1
	default:
		var err error
		start, err = strconv.ParseInt(first, 10, 64)
		if err != nil || start < 0 || start >= size {
			return blob.Range{}, false, errRangeNotSatisfiable(size)
		}
		end = size - 1
		if last != "" {
			e, err := strconv.ParseInt(last, 10, 64)
			if err != nil || e < start {
				return blob.Range{}, false, errRangeNotSatisfiable(size)
			}
			end = min(e, size-1)
		}
	}
	return blob.Range{Offset: start, Length: end - start + 1}, true, nil
}

func errRangeNotSatisfiable(size int64) *httpError {
	return &httpError{status: http.StatusRequestedRangeNotSatisfiable, kind: "range-not-satisfiable",
		detail:  fmt.Sprintf("the range is outside the media's %d bytes", size),
		headers: map[string]string{fiber.HeaderContentRange: fmt.Sprintf("bytes */%d", size)}}
}

// assetURL is the absolute URL of a stored asset key: a base and the path
// "/media/{key}" this server serves it under, the same path the catalog stores
// (query/app.Images makes those absolute the same way, from requestBase). The base
// is MEDIAMESH_CDN_BASE_URL when it is set (the CDN pulls from this server's
// /media/, or maps /media/ to the bucket), otherwise requestBase.
func (s *server) assetURL(c *fiber.Ctx, key string) string {
	if s.deps.Assets != nil && s.deps.Assets.CDNBaseURL != "" {
		return strings.TrimRight(s.deps.Assets.CDNBaseURL, "/") + "/media/" + key
	}
	return s.requestBase(c) + "/media/" + key
}

// requestBase is the scheme and host the client addressed ("https://api.example.com"):
// the prefix of asset URLs built per request. They come from X-Forwarded-Proto and
// X-Forwarded-Host only when the request arrives from one of Config.TrustedProxies;
// otherwise from the connection and the Host header, and a host that could change
// the URL's meaning is replaced by "localhost". (fiber's Protocol and Hostname
// would trust the forwarded headers of any client: anyone could then point the
// image URLs of an answer at a host of their choosing, and fill the per-base
// caches with one entry per invented host.)
func (s *server) requestBase(c *fiber.Ctx) string {
	scheme, host := "http", string(c.Request().Host())
	if c.Context().IsTLS() {
		scheme = "https"
	}
	peer, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	if len(s.cfg.TrustedProxies) > 0 && s.trusted(peer.Unmap()) {
		switch p := strings.ToLower(strings.TrimSpace(firstValue(c.Get(fiber.HeaderXForwardedProto)))); p {
		case "http", "https":
			scheme = p
		}
		if h := strings.TrimSpace(firstValue(c.Get(fiber.HeaderXForwardedHost))); validHost(h) {
			host = h
		}
	}
	if !validHost(host) {
		host = "localhost"
	}
	return scheme + "://" + host
}

func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return first
}

// validHost accepts a host[:port] of letters, digits, dots, hyphens, and an IPv6
// literal's brackets and colons: nothing that could change the URL's meaning.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == ':' || b == '[' || b == ']') {
			return false
		}
	}
	return true
}
