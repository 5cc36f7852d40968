// Package s3 is the S3-compatible blob store (AWS S3, MinIO, Ceph, R2, …) on
// github.com/minio/minio-go/v7.
//
// Decisions:
//   - Put sends the object's hex SHA-256 as user metadata (x-amz-meta-sha256) and
//     Stat/Get return it as Info.ETag, so an object's ETag is the same as with the
//     filesystem adapter. An object written by something else has no such metadata;
//     its ETag is then the store's own (quotes removed), still a strong validator.
//   - Get issues one GET (ranged when asked) through minio's Core client and takes
//     Info from that very response, so the bytes and their ETag always belong
//     together, even while the key is being replaced.
//   - Single PUTs only: objects are bounded by the upload limit (20 MiB by default),
//     far below S3's 5 GiB single-PUT limit, and a single PUT is atomic.
//   - PathStyle selects path-style requests (http://host/bucket/key), which MinIO
//     and most self-hosted services need; otherwise the client picks (virtual-host
//     style for AWS).
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mediamesh/mediamesh/infra/blob"
)

// shaMeta is the user-metadata name of the content hash (x-amz-meta-sha256).
const shaMeta = "Sha256"

// Config is what the adapter needs (MEDIAMESH_S3_*).
type Config struct {
	// Endpoint is the service's base URL, http or https (e.g. http://127.0.0.1:9000,
	// https://s3.eu-west-1.amazonaws.com).
	Endpoint string
	Bucket   string
	// Region is the bucket's region (default us-east-1).
	Region string
	// AccessKey and SecretKey are static credentials; both empty means anonymous.
	AccessKey, SecretKey string
	// PathStyle forces path-style requests (MinIO and most self-hosted services).
	PathStyle bool
	// Transport, when set, is the HTTP transport (tests; default: minio's).
	Transport http.RoundTripper
}

// Store is an S3-compatible blob store. It is safe for concurrent use.
type Store struct {
	core   minio.Core
	bucket string
}

// New returns a store for cfg. It does not contact the service: call Ping (or
// EnsureBucket) to check it.
func New(cfg Config) (*Store, error) {
	var errs []error
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		errs = append(errs, fmt.Errorf("blob s3: endpoint %q must be an http or https URL without a path", cfg.Endpoint))
	}
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("blob s3: empty bucket"))
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		errs = append(errs, errors.New("blob s3: access key and secret key must be set together"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	c, err := minio.NewCore(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       u.Scheme == "https",
		Region:       region,
		BucketLookup: lookup,
		Transport:    cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("blob s3: %w", err)
	}
	return &Store{core: *c, bucket: cfg.Bucket}, nil
}

// Ping checks that the bucket is reachable (for /health/ready).
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob s3: bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("blob s3: bucket %s does not exist", s.bucket)
	}
	return nil
}

// EnsureBucket creates the bucket when it does not exist (embedded and compose
// setups; a production bucket is usually provisioned beforehand).
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob s3: bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	if err := s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{}); err != nil {
		code := minio.ToErrorResponse(err).Code
		if code == minio.BucketAlreadyOwnedByYou || code == minio.BucketAlreadyExists {
			return nil
		}
		return fmt.Errorf("blob s3: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Put stores data under key with a single PUT.
func (s *Store) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	shaHex := hex.EncodeToString(sum[:])
	_, err := s.core.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), "", shaHex, minio.PutObjectOptions{
		ContentType:  contentType,
		UserMetadata: map[string]string{shaMeta: shaHex},
		// minio-go signs bodies over plain HTTP as aws-chunked streams, and sends an
		// empty one without a Content-Length, which S3 rejects (MissingContentLength).
		// An empty body has nothing to protect: send it unsigned.
		DisableContentSha256: len(data) == 0,
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, mapErr(err))
	}
	return nil
}

// Read returns a whole object.
func (s *Store) Read(ctx context.Context, key string) ([]byte, error) {
	rc, info, err := s.Get(ctx, key, blob.Range{})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, 0, info.Size)
	b := bytes.NewBuffer(buf)
	if _, err := io.Copy(b, rc); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(b.Len()) != info.Size {
		return nil, fmt.Errorf("read %s: got %d bytes of %d", key, b.Len(), info.Size)
	}
	return b.Bytes(), nil
}

// Stat describes an object with a HEAD request.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, mapErr(err))
	}
	return infoOf(key, oi, oi.Size), nil
}

// Get returns the bytes of rng with the Info of the response they came in.
func (s *Store) Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	if !rng.Whole() && (rng.Offset < 0 || rng.Length <= 0) {
		return nil, blob.Info{}, fmt.Errorf("get %s: %w", key, rng.Check(0))
	}
	var opts minio.GetObjectOptions
	if !rng.Whole() {
		if err := opts.SetRange(rng.Offset, rng.Offset+rng.Length-1); err != nil {
			return nil, blob.Info{}, fmt.Errorf("get %s: %w", key, blob.ErrInvalidRange)
		}
	}
	rc, oi, hdr, err := s.core.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable ||
			minio.ToErrorResponse(err).Code == "InvalidRange" {
			return nil, blob.Info{}, fmt.Errorf("get %s: %w", key, blob.ErrInvalidRange)
		}
		return nil, blob.Info{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	size := oi.Size
	if !rng.Whole() {
		total, ok := totalFromContentRange(hdr.Get("Content-Range"))
		if !ok {
			rc.Close()
			return nil, blob.Info{}, fmt.Errorf("get %s: ranged response without a valid Content-Range", key)
		}
		size = total
		// A service may answer a range that runs past the end with what it has: the
		// port promises exactly the range or ErrInvalidRange.
		if err := rng.Check(size); err != nil || oi.Size != rng.Length {
			rc.Close()
			return nil, blob.Info{}, fmt.Errorf("get %s: %w", key, blob.ErrInvalidRange)
		}
	}
	return rc, infoOf(key, oi, size), nil
}

// Delete removes an object; a missing one is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if err := s.core.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !errors.Is(mapErr(err), blob.ErrNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func infoOf(key string, oi minio.ObjectInfo, size int64) blob.Info {
	etag := ""
	for k, v := range oi.UserMetadata {
		if strings.EqualFold(k, shaMeta) || strings.EqualFold(k, "X-Amz-Meta-"+shaMeta) {
			etag = v
		}
	}
	if etag == "" {
		etag = strings.Trim(oi.ETag, `"`)
	}
	return blob.Info{Key: key, Size: size, ContentType: oi.ContentType, ETag: etag, ModTime: oi.LastModified.UTC()}
}

// totalFromContentRange reads the complete length of "bytes a-b/total".
func totalFromContentRange(v string) (int64, bool) {
	_, total, ok := strings.Cut(v, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

// mapErr turns the service's "no such key" into blob.ErrNotFound.
func mapErr(err error) error {
	r := minio.ToErrorResponse(err)
	if r.Code == minio.NoSuchKey || r.Code == "NotFound" || (r.StatusCode == http.StatusNotFound && r.Code != minio.NoSuchBucket) {
		return fmt.Errorf("%w: %w", blob.ErrNotFound, err)
	}
	return err
}
