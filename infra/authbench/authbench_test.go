package authbench_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/authbench"
	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestRunProducesAValidDocument runs the suite briefly and checks the shape of what
// it reports (the numbers themselves are for `mediamesh bench auth`).
func TestRunProducesAValidDocument(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	results, err := authbench.Run(context.Background(), authbench.Options{
		Concurrency: 2, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond, Tokens: 20,
		Accounts: accounts.Config{BcryptCost: bcrypt.MinCost, AllowLowBcryptCost: true},
	}, postgres.NewAccountStore(pool))
	if err != nil {
		t.Fatal(err)
	}
	doc := bench.NewDocument("auth")
	doc.Results = results
	if _, err := doc.Marshal(); err != nil {
		t.Fatalf("the document does not validate: %v", err)
	}
	byName := map[string]bench.Result{}
	for _, r := range results {
		byName[r.Name] = r
		if r.Count == 0 || r.Errors != 0 || r.ThroughputPerS <= 0 || r.P50Ms == nil || r.P95Ms == nil || r.P99Ms == nil {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
	cached, uncached, login := byName["verify_cached"], byName["verify_uncached"], byName["login"]
	if cached.Baseline == nil || cached.Baseline.Name != "verify_uncached" || cached.Ratio == nil || cached.HitRate == nil || *cached.HitRate < 0.5 {
		t.Fatalf("verify_cached: %+v", cached)
	}
	if uncached.Name == "" || login.Unit != "logins" || len(login.Targets) != 1 || login.Targets[0].Field != "p99_ms" {
		t.Fatalf("uncached %+v, login %+v", uncached, login)
	}
	t.Logf("cached %.0f/s, uncached %.0f/s (ratio %.1f), login %.0f/s", cached.ThroughputPerS, uncached.ThroughputPerS, *cached.Ratio, login.ThroughputPerS)
}
