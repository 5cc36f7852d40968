package app

import (
	"context"
	"encoding/json"
	"time"
)

// HistoryEntry is one event of a program's stream as GET /v1/cms/programs/{id}/history
// shows it. Data is the event's stored JSON, as stored (not upcast), and Type its
// stored type name.
type HistoryEntry struct {
	Position   int64           `json:"position"`
	Version    int64           `json:"version"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	Actor      string          `json:"actor"`
	Data       json.RawMessage `json:"data"`
}

// ProgramHistoryHandler reads a program's stream, oldest event first.
type ProgramHistoryHandler struct{ core core }

// NewProgramHistoryHandler returns the handler; it panics on a nil store.
func NewProgramHistoryHandler(store EventStore, opts ...Option) ProgramHistoryHandler {
	return ProgramHistoryHandler{core: newCore(store, opts)}
}

// Handle returns every event of the program's stream, or ErrNotFound. Episode
// pointer streams are not part of it (they hold no change of the program).
func (h ProgramHistoryHandler) Handle(ctx context.Context, id string) ([]HistoryEntry, error) {
	envs, err := h.core.readProgramStream(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, len(envs))
	for i, env := range envs {
		data := env.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		out[i] = HistoryEntry{
			Position:   env.Position,
			Version:    env.Version,
			Type:       env.Type,
			OccurredAt: env.OccurredAt.UTC(),
			Actor:      env.Metadata.Actor,
			Data:       data,
		}
	}
	return out, nil
}
