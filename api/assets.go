package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/asset"
	"github.com/mediamesh/mediamesh/events"
)

// DefaultAssetMaxBytes is the largest uploaded file (API.md: 20 MiB, configurable).
const DefaultAssetMaxBytes = 20 << 20

// multipartOverhead is what an upload's body may hold besides the file: the part
// headers, the boundaries and the small fields.
const multipartOverhead = 64 << 10

// maxAssetFieldLen bounds the value of a text field of an upload (a UUID or a kind
// needs far less).
const maxAssetFieldLen = 256

// AssetUploader is the upload command (app.UploadAssetHandler).
type AssetUploader interface {
	Handle(ctx context.Context, cmd app.UploadAsset) (app.AssetUploadResult, error)
}

// Assets are the asset routes' dependencies. Upload and Media are each optional:
// POST /v1/assets exists only with Upload (which also needs Deps.Tokens and
// Deps.Idempotency), the /media/ routes only with Media.
type Assets struct {
	Upload AssetUploader
	// Media serves the stored blobs under /media/ (infra/blob/fs or s3).
	Media MediaStore
	// CDNBaseURL is MEDIAMESH_CDN_BASE_URL: asset URLs are CDNBaseURL +
	// "/media/" + key when it is set, otherwise the request's scheme and host +
	// "/media/" + key (see assetURL).
	CDNBaseURL string
	// MaxBytes is the largest file an upload may carry (default 20 MiB): 413 above.
	// The server's body limit is raised to fit it.
	MaxBytes int64
}

func (a *Assets) maxBytes() int64 {
	if a.MaxBytes <= 0 {
		return DefaultAssetMaxBytes
	}
	return a.MaxBytes
}

// bodyLimit is the largest upload body: the file and the multipart overhead.
func (a *Assets) bodyLimit() int { return int(a.maxBytes()) + multipartOverhead }

// assetURLs is the urls object of an upload's response.
type assetURLs struct {
	Original string `json:"original"`
	Small    string `json:"small"`
	Medium   string `json:"medium"`
	Large    string `json:"large"`
}

// assetWriteResult is the body of POST /v1/assets.
type assetWriteResult struct {
	ID       string    `json:"id"`
	Version  int64     `json:"version"`
	Position int64     `json:"position"`
	URLs     assetURLs `json:"urls"`
}

func (s *server) registerAssets(f *fiber.App) {
	a := s.deps.Assets
	if a.Media != nil {
		s.registerMedia(f)
	}
	if a.Upload == nil {
		return
	}
	if s.deps.Tokens == nil || s.deps.Idempotency == nil {
		panic("api: Assets.Upload needs Deps.Tokens and Deps.Idempotency")
	}
	if s.tokens == nil {
		t, err := NewConsistencyTokens(s.cfg.ConsistencySecret)
		if err != nil {
			panic("api: " + err.Error())
		}
		s.tokens = t
	}
	s.post(f, "/v1/assets", s.authorize(RoleEditor), s.uploadAsset)
}

// uploadRequest is a parsed upload.
type uploadRequest struct {
	kind, programID, episodeID string
	file                       []byte
	seen                       map[string]bool
}

// uploadAsset handles POST /v1/assets: a strict multipart/form-data body with the
// fields file, kind, and program_id or episode_id. The file's type is decided by the
// command side from its bytes; the part's file name and Content-Type are ignored.
//
// Idempotency-Key works as for the JSON commands. The request hash covers the
// fields and the file's SHA-256 rather than the raw body, whose multipart boundary
// a client may choose afresh on a retry.
func (s *server) uploadAsset(c *fiber.Ctx) error {
	req, err := s.parseUpload(c)
	if err != nil {
		return err
	}
	meta, err := metaOf(c)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(req.file)
	canonical := strings.Join([]string{req.kind, req.programID, req.episodeID, hex.EncodeToString(sum[:])}, "\x00")
	return s.idempotent(c, []byte(canonical), func(scoped string) (storedResponse, error) {
		meta.IdempotencyKey = scoped
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		res, err := s.deps.Assets.Upload.Handle(ctx, app.UploadAsset{Meta: meta, Kind: req.kind,
			ProgramID: req.programID, EpisodeID: req.episodeID, Data: req.file})
		if err != nil {
			err = assetError(err)
			return s.problemResponse(c, err), err
		}
		return s.assetResponse(c, res), nil
	})
}

// parseUpload reads the multipart body: every part is a known field given once, the
// file at most Assets.MaxBytes (413), the text fields short and UTF-8.
func (s *server) parseUpload(c *fiber.Ctx) (uploadRequest, error) {
	if ce := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); ce != "" && !strings.EqualFold(ce, "identity") {
		return uploadRequest{}, errUnsupportedMediaType("Content-Encoding is not supported on requests")
	}
	mt, params, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEMultipartForm || params["boundary"] == "" {
		return uploadRequest{}, errUnsupportedMediaType("Content-Type must be multipart/form-data with a boundary")
	}
	body := c.Request().Body()
	if len(body) > s.deps.Assets.bodyLimit() {
		return uploadRequest{}, errAssetTooLarge(s.deps.Assets.maxBytes())
	}
	req := uploadRequest{seen: map[string]bool{}}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return uploadRequest{}, errBadRequest("the body is not valid multipart/form-data")
		}
		name := part.FormName()
		if req.seen[name] {
			return uploadRequest{}, errBadRequest("invalid fields", FieldError{Field: clip(name), Message: "given more than once"})
		}
		req.seen[name] = true
		switch name {
		case "file":
			data, err := io.ReadAll(io.LimitReader(part, s.deps.Assets.maxBytes()+1))
			if err != nil {
				return uploadRequest{}, errBadRequest("the body is not valid multipart/form-data")
			}
			if int64(len(data)) > s.deps.Assets.maxBytes() {
				return uploadRequest{}, errAssetTooLarge(s.deps.Assets.maxBytes())
			}
			req.file = data
		case "kind", "program_id", "episode_id":
			v, err := io.ReadAll(io.LimitReader(part, maxAssetFieldLen+1))
			if err != nil {
				return uploadRequest{}, errBadRequest("the body is not valid multipart/form-data")
			}
			if len(v) > maxAssetFieldLen || !printableASCII(string(v)) {
				return uploadRequest{}, errBadRequest("invalid fields", FieldError{Field: name, Message: "must be a short ASCII value"})
			}
			val := strings.TrimSpace(string(v))
			switch name {
			case "kind":
				req.kind = val
			case "program_id":
				req.programID = val
			default:
				req.episodeID = val
			}
		default:
			return uploadRequest{}, errBadRequest("invalid fields", FieldError{Field: clip(name), Message: "unknown field; the fields are file, kind, program_id and episode_id"})
		}
	}
	if !req.seen["file"] {
		return uploadRequest{}, errBadRequest("invalid fields", FieldError{Field: "file", Message: "is required"})
	}
	return req, nil
}

func clip(s string) string {
	if len(s) > maxEchoedName {
		s = s[:maxEchoedName]
	}
	if !printableASCII(s) {
		return "(unprintable)"
	}
	return s
}

func errAssetTooLarge(limit int64) *httpError {
	return &httpError{status: http.StatusRequestEntityTooLarge, kind: "body-too-large",
		detail: fmt.Sprintf("the file exceeds %d bytes", limit)}
}

// assetError turns the asset domain's errors into problems; the write side's
// common errors (not found, invalid state, conflicts) pass on to problemFor.
func assetError(err error) error {
	var ve *asset.ValidationError
	detail := strings.TrimPrefix(err.Error(), "upload asset: ")
	switch {
	case errors.As(err, &ve):
		fields := make([]FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = FieldError{Field: f.Field, Message: f.Message}
		}
		return errBadRequest("the request has invalid fields", fields...)
	case errors.Is(err, asset.ErrUnsupportedImage):
		return &httpError{status: http.StatusUnsupportedMediaType, kind: "unsupported-image", detail: detail}
	case errors.Is(err, asset.ErrImageTooLarge):
		return &httpError{status: http.StatusUnprocessableEntity, kind: "image-too-large", detail: detail}
	case errors.Is(err, asset.ErrCorruptImage):
		return &httpError{status: http.StatusUnprocessableEntity, kind: "corrupt-image", detail: detail}
	}
	return err
}

// assetResponse is an upload's success: 201 for a new image, 200 when the slot
// already showed it; the body names the write and the asset's URLs.
func (s *server) assetResponse(c *fiber.Ctx, r app.AssetUploadResult) storedResponse {
	out := assetWriteResult{ID: r.ID, Version: r.Version, Position: r.Position, URLs: assetURLs{
		Original: s.assetURL(c, r.OriginalKey),
		Small:    s.assetURL(c, r.RenditionKeys[events.AssetSizeSmall]),
		Medium:   s.assetURL(c, r.RenditionKeys[events.AssetSizeMedium]),
		Large:    s.assetURL(c, r.RenditionKeys[events.AssetSizeLarge]),
	}}
	body, _ := json.Marshal(out) // strings and ints always marshal
	status := fiber.StatusOK
	if r.Created {
		status = fiber.StatusCreated
	}
	return storedResponse{
		Status: status,
		Headers: map[string]string{
			fiber.HeaderContentType: fiber.MIMEApplicationJSON,
			fiber.HeaderETag:        etag(r.Version),
			HeaderConsistencyToken:  s.tokens.Sign(WritePoint{StreamID: r.StreamID, Version: r.Version, Position: r.Position}),
		},
		Body: body,
	}
}
