package s3_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/mediamesh/mediamesh/infra/blob/blobtest"
	blobs3 "github.com/mediamesh/mediamesh/infra/blob/s3"
)

// newServer starts an in-process S3-compatible server (gofakes3 with its memory
// backend) on 127.0.0.1 and returns its URL. It needs nothing installed, so the
// S3 adapter's contract run always happens.
func newServer(t *testing.T) string {
	t.Helper()
	faker := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog()))
	srv := httptest.NewServer(faker.Server())
	t.Cleanup(srv.Close)
	return srv.URL
}

func newStore(t *testing.T, endpoint, bucket string) *blobs3.Store {
	t.Helper()
	s, err := blobs3.New(blobs3.Config{Endpoint: endpoint, Bucket: bucket, Region: "us-east-1",
		AccessKey: "test-access", SecretKey: "test-secret", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	endpoint := newServer(t)
	s := newStore(t, endpoint, "media")
	blobtest.Run(t, func(t *testing.T) blobtest.Store { return s })
}

func TestPingAndEnsureBucket(t *testing.T) {
	t.Parallel()
	endpoint := newServer(t)
	s, err := blobs3.New(blobs3.Config{Endpoint: endpoint, Bucket: "later", AccessKey: "a", SecretKey: "b", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("ping before the bucket exists: %v", err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := s.EnsureBucket(ctx); err != nil {
			t.Fatalf("ensure bucket #%d: %v", i+1, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  blobs3.Config
		want []string
	}{
		{"nothing", blobs3.Config{}, []string{"endpoint", "bucket"}},
		{"path in endpoint", blobs3.Config{Endpoint: "http://h:9000/x", Bucket: "b"}, []string{"endpoint"}},
		{"ftp", blobs3.Config{Endpoint: "ftp://h", Bucket: "b"}, []string{"endpoint"}},
		{"half credentials", blobs3.Config{Endpoint: "http://h:9000", Bucket: "b", AccessKey: "a"}, []string{"secret key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := blobs3.New(tc.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}
