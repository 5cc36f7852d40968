package events

// StreamAppend is one stream's part of a multi-stream append (an event store's
// AppendMany): Events go to StreamID if its version is ExpectedVersion
// (ExpectAny, ExpectNoStream or an exact version). An AppendMany writes all its
// parts or none.
type StreamAppend struct {
	StreamID        string
	ExpectedVersion int64
	Events          []Envelope
}
