package esdb_test

import (
	"os"
	"testing"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/eventstore/esdb"
	"github.com/mediamesh/mediamesh/infra/eventstore/eventstoretest"
)

var (
	_ eventstoretest.Store = (*esdb.Store)(nil)
	_ app.EventStore       = (*esdb.Store)(nil)
)

// TestConformance runs the event store suite against a real EventStoreDB/KurrentDB
// node. All subtests share the server: the suite names its streams uniquely.
func TestConformance(t *testing.T) {
	url := os.Getenv("MEDIAMESH_TEST_ESDB_URL")
	if url == "" {
		t.Skip("EventStoreDB conformance not run: start a node (e.g. docker run -p 2113:2113 " +
			"docker.kurrent.io/kurrent-latest/kurrentdb --insecure --run-projections=None) and set " +
			"MEDIAMESH_TEST_ESDB_URL=esdb://127.0.0.1:2113?tls=false")
	}
	store, err := esdb.Dial(url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = store.Close() })
	eventstoretest.Run(t, func(*testing.T) eventstoretest.Store { return store })
}
