package app

import (
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// Discovery shapes (API.md "Discovery"). The field order of the JSON is the order
// of the struct fields, so a program renders to the same bytes whichever layer
// (Redis document, PostgreSQL row) it came from, and its ETag is the same too.

// Program is a visible program as discovery shows it: GET /v1/programs/{id} and
// every list of programs. Version is the program stream's version that the program
// reflects.
type Program struct {
	ID           string     `json:"id"`
	Title        string     `json:"title"`
	Description  string     `json:"description"`
	Category     string     `json:"category"`
	Language     string     `json:"language"`
	Tags         []string   `json:"tags"`
	PublishedAt  *time.Time `json:"published_at"`
	EpisodeCount int        `json:"episode_count"`
	Images       Images     `json:"images"`
	Version      int64      `json:"version"`
}

// Episode is a visible episode as discovery shows it (GET /v1/episodes/{id} and
// GET /v1/programs/{id}/episodes).
type Episode struct {
	ID              string     `json:"id"`
	ProgramID       string     `json:"program_id"`
	Title           string     `json:"title"`
	Number          int        `json:"number"`
	Season          int        `json:"season"`
	Description     string     `json:"description"`
	DurationSeconds int        `json:"duration_seconds"`
	PublishedAt     *time.Time `json:"published_at"`
	Images          Images     `json:"images"`
}

// Images are a program's or an episode's artwork by kind; a kind without an asset
// is absent.
type Images struct {
	Poster    *ImageSet `json:"poster,omitempty"`
	Thumbnail *ImageSet `json:"thumbnail,omitempty"`
	Backdrop  *ImageSet `json:"backdrop,omitempty"`
}

// ImageSet holds the URLs of one image's sizes.
type ImageSet struct {
	Small    string `json:"small"`
	Medium   string `json:"medium"`
	Large    string `json:"large"`
	Original string `json:"original"`
}

// Category is one item of GET /v1/categories.
type Category struct {
	Slug         string `json:"slug"`
	ProgramCount int    `json:"program_count"`
}

// Relative reports whether any URL of im is relative to the server ("/media/…"),
// so that rendering it depends on the request's base URL.
func (im Images) Relative() bool {
	for _, s := range []*ImageSet{im.Poster, im.Thumbnail, im.Backdrop} {
		if s != nil && (isRelative(s.Small) || isRelative(s.Medium) || isRelative(s.Large) || isRelative(s.Original)) {
			return true
		}
	}
	return false
}

// Absolute returns im with every relative URL prefixed by base (API.md: asset URLs
// are absolute, under MEDIAMESH_CDN_BASE_URL when set, otherwise built from the
// request's scheme and host). Absolute URLs are kept as they are.
func (im Images) Absolute(base string) Images {
	abs := func(s *ImageSet) *ImageSet {
		if s == nil {
			return nil
		}
		out := *s
		for _, p := range []*string{&out.Small, &out.Medium, &out.Large, &out.Original} {
			if isRelative(*p) {
				*p = strings.TrimSuffix(base, "/") + *p
			}
		}
		return &out
	}
	return Images{Poster: abs(im.Poster), Thumbnail: abs(im.Thumbnail), Backdrop: abs(im.Backdrop)}
}

func isRelative(u string) bool { return strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") }

// WritePoint names a write a read must include: the stream, its version after the
// write and the global position of the write's last event. The api builds it from a
// verified consistency token.
type WritePoint struct {
	StreamID string
	Version  int64
	Position int64
}

// programStreamPrefix starts a program's stream id (events.ProgramStreamID).
const programStreamPrefix = "program-"

// ProgramID returns the program whose stream the write is on, or "" when the write
// is on another stream (an asset's). A program's catalog row carries the stream
// version, so for such writes "includes the write" is checked exactly on the row,
// whatever order partitions were consumed in; for other streams it is the serving
// projection's checkpoint against the write's position.
func (w WritePoint) ProgramID() string {
	id, ok := strings.CutPrefix(w.StreamID, programStreamPrefix)
	if !ok || !uuidRE.MatchString(id) {
		return ""
	}
	return id
}

// Source names the layer an answer came from.
type Source string

// Sources, from the nearest layer to the farthest.
const (
	SourceMemory   Source = "memory"
	SourceRedis    Source = "redis"
	SourcePostgres Source = "postgres"
	SourceSearch   Source = "search"
)

// Snapshot describes the projection state an answer was read from.
type Snapshot struct {
	// Source is the layer that answered.
	Source Source
	// Position is the serving projection's checkpoint read together with the data
	// (PostgreSQL), or the latest position the layer is known to have applied (0:
	// unknown).
	Position int64
	// Includes reports whether the data includes the write the read required; it is
	// true when no write was required.
	Includes bool
}

// Projection names the read models answer from; the wait for a consistency token
// is made on the projection that serves the read.
const (
	ProjectionCatalog   = "catalog"
	ProjectionSearch    = "search"
	ProjectionDocuments = "documents"
)

// ErrNotFound: the program or episode does not exist or is not visible (404).
var ErrNotFound = errors.New("not found")

// ErrNotConsistent: the serving projection did not include the consistency token's
// write within the bounded wait (503 with Retry-After).
var ErrNotConsistent = errors.New("the projection does not include the write yet")

// ErrUnavailable: the read model cannot be reached (503 with Retry-After).
var ErrUnavailable = errors.New("read model unavailable")

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	slugRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
)

// maxSlugLen bounds a category or tag slug, as the command side does.
const maxSlugLen = 64

// validSlug reports a lowercase slug of at most 64 characters.
func validSlug(s string) bool { return len(s) <= maxSlugLen && slugRE.MatchString(s) }

// canonicalUUID returns a UUID in its canonical lower-case form, or false.
func canonicalUUID(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	return s, uuidRE.MatchString(s)
}

// canonicalLanguage parses a BCP 47 tag into the canonical form the catalog stores
// ("EN-us" -> "en-US"), so that a filter matches however the client spells it.
func canonicalLanguage(s string) (string, bool) {
	if s == "" || len(s) > 35 || !utf8.ValidString(s) {
		return "", false
	}
	tag, err := language.Parse(s)
	if err != nil {
		return "", false
	}
	return tag.String(), true
}
