package events

import (
	"crypto/sha256"
	"encoding/hex"
)

// TypeProgramExternalIDRegistered is the only event of a program's external-id
// pointer stream (ProgramExternalIDStreamID): it names the program that a feed's
// external id maps to. Ingest appends it with events.ExpectNoStream before the
// program's own stream exists, so two feeds that bring the same new external id at
// once cannot create two programs: one append wins, the other reads the winner.
// The pointer never changes afterwards.
const TypeProgramExternalIDRegistered = "mediamesh.program.external_id_registered.v1"

// programExternalIDStreamPrefix starts every external-id pointer stream. It is
// deliberately not "program-": nothing that strips that prefix to get a program id
// (or an EventStoreDB category projection, which splits at the first '-') may
// mistake a pointer stream for a program's stream.
const programExternalIDStreamPrefix = "programext-"

// ProgramExternalIDStreamID is the pointer stream of an external id:
// "programext-" and the hex SHA-256 of the id. Hashing keeps the stream name short,
// fixed-length and free of whatever characters a provider puts in its ids.
func ProgramExternalIDStreamID(externalID string) string {
	sum := sha256.Sum256([]byte(externalID))
	return programExternalIDStreamPrefix + hex.EncodeToString(sum[:])
}

// ProgramExternalIDRegistered maps an external id (as a feed spells it) to the
// program created for it.
//
// It lives on its own pointer stream, not on the program's stream; events.ProgramIDOf
// still returns the program it names, so the relay keys it beside that program's
// events (DESIGN.md: everything about one program on one partition). Program-stream
// projections ignore it.
type ProgramExternalIDRegistered struct {
	ExternalID string `json:"external_id"`
	ProgramID  string `json:"program_id"`
}

// EventType implements Event.
func (ProgramExternalIDRegistered) EventType() string { return TypeProgramExternalIDRegistered }
