// Package streamcheck holds the one check that every program-stream projection
// makes before trusting an event: that an event of the program aggregate sits on
// its own program's stream, with well-formed ids. Row version guards rely on the
// stream version being the program's, so an event that breaks this is poison, not
// something to retry.
package streamcheck

import (
	"fmt"

	"github.com/mediamesh/mediamesh/events"
)

// Check returns why ev (decoded from env) cannot be applied to program-stream read
// models, or nil. Only the program aggregate's events are checked: others (the
// episode pointer events, asset events, whatever comes later) pass, and the
// projections ignore those they do not handle.
func Check(env events.Envelope, ev events.Event) error {
	var programID, episodeID string
	episode := false
	switch e := ev.(type) {
	case events.ProgramCreated:
		programID = e.ProgramID
	case events.ProgramUpdated:
		programID = e.ProgramID
	case events.ProgramPublished:
		programID = e.ProgramID
	case events.ProgramUnpublished:
		programID = e.ProgramID
	case events.ProgramArchived:
		programID = e.ProgramID
	case events.EpisodeAdded:
		programID, episodeID, episode = e.ProgramID, e.EpisodeID, true
	case events.EpisodeUpdated:
		programID, episodeID, episode = e.ProgramID, e.EpisodeID, true
	case events.EpisodePublished:
		programID, episodeID, episode = e.ProgramID, e.EpisodeID, true
	case events.EpisodeUnpublished:
		programID, episodeID, episode = e.ProgramID, e.EpisodeID, true
	case events.EpisodeArchived:
		programID, episodeID, episode = e.ProgramID, e.EpisodeID, true
	default:
		return nil
	}
	if env.StreamID != events.ProgramStreamID(programID) {
		return fmt.Errorf("event of program %q on stream %q", programID, env.StreamID)
	}
	if !ValidUUID(programID) {
		return fmt.Errorf("program id %q is not a UUID", programID)
	}
	if episode && !ValidUUID(episodeID) {
		return fmt.Errorf("episode id %q is not a UUID", episodeID)
	}
	if env.Version < 1 {
		return fmt.Errorf("stream version %d", env.Version)
	}
	return nil
}

// ValidUUID accepts the canonical 8-4-4-4-12 hexadecimal form.
func ValidUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
