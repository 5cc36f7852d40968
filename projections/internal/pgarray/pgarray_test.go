package pgarray_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/internal/pgarray"
)

// TestTextLiteral round-trips awkward values through the server's ::text[] cast.
func TestTextLiteral(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	tests := [][]string{
		nil,
		{},
		{"crime", "nordic"},
		{"", "NULL", "a,b", "{x}", `quote"d`, `back\slash`, "space d", "ünï", "x\ny"},
	}
	for _, tc := range tests {
		var got []string
		if err := pool.QueryRow(context.Background(), `SELECT $1::text::text[]`, pgarray.TextLiteral(tc)).Scan(&got); err != nil {
			t.Fatalf("%q: %v", tc, err)
		}
		want := tc
		if want == nil {
			want = []string{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %q gave %q", tc, got)
		}
	}
}
