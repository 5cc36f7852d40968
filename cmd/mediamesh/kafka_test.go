package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestServeKafkaMode runs the Kafka deployment's roles in-process against a kfake
// broker: `serve --role relay` (which creates the topics and publishes the event
// store's log), `--role projector` (whose projections consume content.events in
// their consumer groups) and `--role command`. A program created through the
// command API must reach the editorial read model only by way of Kafka: under
// MEDIAMESH_BUS=kafka the projector never reads the event store's log itself.
func TestServeKafkaMode(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewDB(t)
	brokers := kafkatest.Start(t, 1)
	vars := serverVars(t, dbURL)
	vars[config.KeyBus] = string(config.BusKafka)
	vars[config.KeyKafkaBrokers] = strings.Join(brokers, ",")

	relayBase, stopRelay, relayLogs := startServe(t, vars, "--role", "relay")
	code, _, body := call(t, "GET", relayBase+"/health/ready", "", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"kafka":"ok"`) || !strings.Contains(string(body), `"eventstore":"ok"`) {
		t.Errorf("relay /health/ready: %d %s", code, body)
	}
	_, stopProjector, projLogs := startServe(t, vars, "--role", "projector")
	cmdBase, _, _ := startServe(t, vars, "--role", "command")

	editor := mintToken(t, vars, "editor")
	code, _, body = call(t, "POST", cmdBase+"/v1/programs", editor, `{"title":"Through Kafka","category":"documentary","language":"en"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/programs: %d %s", code, body)
	}
	var res struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.ID == "" {
		t.Fatalf("create response %s: %v", body, err)
	}
	waitFor(t, 45*time.Second, "the editorial row of the program, via the relay and content.events", func() (bool, string) {
		var title string
		err := pool.QueryRow(context.Background(), `SELECT title FROM editorial_programs_v1 WHERE id = $1`, res.ID).Scan(&title)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, "no row yet"
		}
		return err == nil && title == "Through Kafka", fmt.Sprintf("title %q, error %v", title, err)
	})
	// The row came through Kafka: the editorial projection's consumer group has
	// committed an offset past the program's event.
	admin := kafkaAdmin(t, brokers)
	group := kafka.GroupName("editorial.v1")
	waitFor(t, 15*time.Second, "a committed offset of consumer group "+group, func() (bool, string) {
		offs, err := admin.ListConsumerGroupOffsets(group, nil)
		if err != nil {
			return false, err.Error()
		}
		var committed int64
		for _, parts := range offs.Blocks {
			for _, b := range parts {
				committed += max(b.Offset, 0)
			}
		}
		return committed > 0, fmt.Sprintf("%d committed messages", committed)
	})
	for name, stop := range map[string]func() int{"projector": stopProjector, "relay": stopRelay} {
		if code := stop(); code != 0 {
			t.Errorf("%s exit code %d; logs:\nrelay:\n%s\nprojector:\n%s", name, code, relayLogs.String(), projLogs.String())
		}
	}
}

// kafkaAdmin returns a cluster admin on brokers, closed when t ends.
func kafkaAdmin(t *testing.T, brokers []string) sarama.ClusterAdmin {
	t.Helper()
	sc, err := kafka.NewSaramaConfig(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return admin
}
