package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// ErrUnknownType is returned when decoding an event whose type the codec does not know.
var ErrUnknownType = errors.New("unknown event type")

// Upcaster turns the stored data of an old event type into a newer one. It returns the
// new type name and data; the codec applies upcasters until the type has none.
type Upcaster func(data json.RawMessage) (newType string, newData json.RawMessage, err error)

// Codec encodes events to JSON and decodes stored envelopes back into events.
// It is built once (NewCodec) and safe for concurrent use afterwards.
type Codec struct {
	decoders  map[string]func(json.RawMessage) (Event, error)
	upcasters map[string]Upcaster
}

// NewCodec returns a codec that knows every MediaMesh event type.
func NewCodec() *Codec {
	c := &Codec{decoders: map[string]func(json.RawMessage) (Event, error){}, upcasters: map[string]Upcaster{}}
	register[ProgramCreated](c)
	register[ProgramUpdated](c)
	register[ProgramPublished](c)
	register[ProgramUnpublished](c)
	register[ProgramArchived](c)
	register[EpisodeAdded](c)
	register[EpisodeUpdated](c)
	register[EpisodePublished](c)
	register[EpisodeUnpublished](c)
	register[EpisodeArchived](c)
	register[EpisodeRegistered](c)
	register[ProgramExternalIDRegistered](c)
	register[AssetSlotAssigned](c)
	register[AssetUploaded](c)
	register[AssetProcessed](c)
	return c
}

// register adds a decoder for T under the type name T's EventType method returns.
func register[T Event](c *Codec) {
	var zero T
	c.decoders[zero.EventType()] = func(data json.RawMessage) (Event, error) {
		var v T
		err := json.Unmarshal(data, &v)
		return v, err
	}
}

// WithUpcaster registers an upcaster for stored events of type fromType and returns
// the codec. Call it only while building the codec.
func (c *Codec) WithUpcaster(fromType string, u Upcaster) *Codec {
	c.upcasters[fromType] = u
	return c
}

// Types lists the type names the codec decodes, sorted.
func (c *Codec) Types() []string {
	out := make([]string, 0, len(c.decoders))
	for t := range c.decoders {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Encode returns the type name and JSON data of an event.
func (c *Codec) Encode(e Event) (string, json.RawMessage, error) {
	typ := e.EventType()
	if _, ok := c.decoders[typ]; !ok {
		return "", nil, fmt.Errorf("encode %s: %w", typ, ErrUnknownType)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return typ, data, nil
}

// Decode returns the event an envelope carries, after upcasting it to the current
// shape. The returned value is the event struct itself (not a pointer).
func (c *Codec) Decode(typ string, data json.RawMessage) (Event, error) {
	for seen := 0; ; seen++ {
		up, ok := c.upcasters[typ]
		if !ok {
			break
		}
		if seen > 32 {
			return nil, fmt.Errorf("decode %s: upcaster loop", typ)
		}
		nt, nd, err := up(data)
		if err != nil {
			return nil, fmt.Errorf("upcast %s: %w", typ, err)
		}
		typ, data = nt, nd
	}
	dec, ok := c.decoders[typ]
	if !ok {
		return nil, fmt.Errorf("decode %s: %w", typ, ErrUnknownType)
	}
	ev, err := dec(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return ev, nil
}

// DecodeEnvelope decodes the event an envelope carries.
func (c *Codec) DecodeEnvelope(env Envelope) (Event, error) {
	return c.Decode(env.Type, env.Data)
}
