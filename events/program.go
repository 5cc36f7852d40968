package events

// Stored type names of the program aggregate's events. A program owns its episodes:
// all of these live on the stream "program-{program_id}".
const (
	TypeProgramCreated     = "mediamesh.program.created.v1"
	TypeProgramUpdated     = "mediamesh.program.updated.v1"
	TypeProgramPublished   = "mediamesh.program.published.v1"
	TypeProgramUnpublished = "mediamesh.program.unpublished.v1"
	TypeProgramArchived    = "mediamesh.program.archived.v1"
	TypeEpisodeAdded       = "mediamesh.episode.added.v1"
	TypeEpisodeUpdated     = "mediamesh.episode.updated.v1"
	TypeEpisodePublished   = "mediamesh.episode.published.v1"
	TypeEpisodeUnpublished = "mediamesh.episode.unpublished.v1"
	TypeEpisodeArchived    = "mediamesh.episode.archived.v1"
	// TypeEpisodeRegistered is the only event of an episode's pointer stream
	// "episode-{episode_id}": it names the program whose stream holds the episode, so
	// an episode id resolves to its program from the event store alone, without a race.
	TypeEpisodeRegistered = "mediamesh.episode.registered.v1"
)

// programStreamTypes are the types of the events on a program's stream.
var programStreamTypes = map[string]bool{
	TypeProgramCreated: true, TypeProgramUpdated: true, TypeProgramPublished: true,
	TypeProgramUnpublished: true, TypeProgramArchived: true,
	TypeEpisodeAdded: true, TypeEpisodeUpdated: true, TypeEpisodePublished: true,
	TypeEpisodeUnpublished: true, TypeEpisodeArchived: true,
}

// IsProgramStreamType reports whether t is the type of an event of a program's
// stream (the program aggregate's events, episodes included): what the read
// models of programs apply.
func IsProgramStreamType(t string) bool { return programStreamTypes[t] }

// ProgramStreamID is the stream of a program and its episodes.
func ProgramStreamID(programID string) string { return "program-" + programID }

// EpisodeStreamID is the pointer stream of an episode (one EpisodeRegistered event).
func EpisodeStreamID(episodeID string) string { return "episode-" + episodeID }

// ProgramCreated starts a program's stream. The program is a draft.
type ProgramCreated struct {
	ProgramID   string   `json:"program_id"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Category    string   `json:"category"`
	Language    string   `json:"language"`
	Tags        []string `json:"tags"`
	ExternalID  string   `json:"external_id,omitempty"`
}

// ProgramUpdated carries only the fields that changed; a nil field did not change.
type ProgramUpdated struct {
	ProgramID   string    `json:"program_id"`
	Title       *string   `json:"title,omitempty"`
	Description *string   `json:"description,omitempty"`
	Category    *string   `json:"category,omitempty"`
	Language    *string   `json:"language,omitempty"`
	Tags        *[]string `json:"tags,omitempty"`
}

// ProgramPublished makes a program visible to discovery.
type ProgramPublished struct {
	ProgramID string `json:"program_id"`
}

// ProgramUnpublished hides a published program again; it can be republished.
type ProgramUnpublished struct {
	ProgramID string `json:"program_id"`
}

// ProgramArchived retires a program for good: it can no longer change or be published.
type ProgramArchived struct {
	ProgramID string `json:"program_id"`
}

// EpisodeAdded adds a draft episode to its program.
type EpisodeAdded struct {
	ProgramID       string `json:"program_id"`
	EpisodeID       string `json:"episode_id"`
	Title           string `json:"title"`
	Number          int    `json:"number"`
	Season          int    `json:"season"`
	Description     string `json:"description"`
	DurationSeconds int    `json:"duration_seconds"`
	ExternalID      string `json:"external_id,omitempty"`
}

// EpisodeUpdated carries only the fields that changed; a nil field did not change.
type EpisodeUpdated struct {
	ProgramID       string  `json:"program_id"`
	EpisodeID       string  `json:"episode_id"`
	Title           *string `json:"title,omitempty"`
	Number          *int    `json:"number,omitempty"`
	Season          *int    `json:"season,omitempty"`
	Description     *string `json:"description,omitempty"`
	DurationSeconds *int    `json:"duration_seconds,omitempty"`
}

// EpisodePublished makes an episode visible to discovery (while its program is published).
type EpisodePublished struct {
	ProgramID string `json:"program_id"`
	EpisodeID string `json:"episode_id"`
}

// EpisodeUnpublished hides a published episode again.
type EpisodeUnpublished struct {
	ProgramID string `json:"program_id"`
	EpisodeID string `json:"episode_id"`
}

// EpisodeArchived retires an episode for good.
type EpisodeArchived struct {
	ProgramID string `json:"program_id"`
	EpisodeID string `json:"episode_id"`
}

// EpisodeRegistered points an episode id at the program that owns it.
type EpisodeRegistered struct {
	EpisodeID string `json:"episode_id"`
	ProgramID string `json:"program_id"`
}

func (ProgramCreated) EventType() string     { return TypeProgramCreated }
func (ProgramUpdated) EventType() string     { return TypeProgramUpdated }
func (ProgramPublished) EventType() string   { return TypeProgramPublished }
func (ProgramUnpublished) EventType() string { return TypeProgramUnpublished }
func (ProgramArchived) EventType() string    { return TypeProgramArchived }
func (EpisodeAdded) EventType() string       { return TypeEpisodeAdded }
func (EpisodeUpdated) EventType() string     { return TypeEpisodeUpdated }
func (EpisodePublished) EventType() string   { return TypeEpisodePublished }
func (EpisodeUnpublished) EventType() string { return TypeEpisodeUnpublished }
func (EpisodeArchived) EventType() string    { return TypeEpisodeArchived }
func (EpisodeRegistered) EventType() string  { return TypeEpisodeRegistered }

// ProgramIDOf returns the program an event of the catalog belongs to, or "" for an
// event that belongs to none. The relay uses it as the Kafka key.
func ProgramIDOf(e Event) string {
	switch ev := e.(type) {
	case ProgramCreated:
		return ev.ProgramID
	case ProgramUpdated:
		return ev.ProgramID
	case ProgramPublished:
		return ev.ProgramID
	case ProgramUnpublished:
		return ev.ProgramID
	case ProgramArchived:
		return ev.ProgramID
	case EpisodeAdded:
		return ev.ProgramID
	case EpisodeUpdated:
		return ev.ProgramID
	case EpisodePublished:
		return ev.ProgramID
	case EpisodeUnpublished:
		return ev.ProgramID
	case EpisodeArchived:
		return ev.ProgramID
	case EpisodeRegistered:
		return ev.ProgramID
	case ProgramExternalIDRegistered:
		return ev.ProgramID
	case AssetSlotAssigned:
		return ev.ProgramID
	case AssetUploaded:
		return ev.ProgramID
	case AssetProcessed:
		return ev.ProgramID
	}
	return ""
}
