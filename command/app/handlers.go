package app

// Handlers holds every write-side handler and editorial read, so the composition
// root wires one value and the api takes what it needs.
type Handlers struct {
	CreateProgram    CreateProgramHandler
	UpdateProgram    UpdateProgramHandler
	PublishProgram   PublishProgramHandler
	UnpublishProgram UnpublishProgramHandler
	ArchiveProgram   ArchiveProgramHandler
	AddEpisode       AddEpisodeHandler
	UpdateEpisode    UpdateEpisodeHandler
	PublishEpisode   PublishEpisodeHandler
	UnpublishEpisode UnpublishEpisodeHandler
	ArchiveEpisode   ArchiveEpisodeHandler

	ProgramByID    ProgramByIDHandler
	EpisodeByID    EpisodeByIDHandler
	ProgramHistory ProgramHistoryHandler
}

// NewHandlers builds every handler on one event store; it panics on a nil store.
func NewHandlers(store EventStore, opts ...Option) Handlers {
	return Handlers{
		CreateProgram:    NewCreateProgramHandler(store, opts...),
		UpdateProgram:    NewUpdateProgramHandler(store, opts...),
		PublishProgram:   NewPublishProgramHandler(store, opts...),
		UnpublishProgram: NewUnpublishProgramHandler(store, opts...),
		ArchiveProgram:   NewArchiveProgramHandler(store, opts...),
		AddEpisode:       NewAddEpisodeHandler(store, opts...),
		UpdateEpisode:    NewUpdateEpisodeHandler(store, opts...),
		PublishEpisode:   NewPublishEpisodeHandler(store, opts...),
		UnpublishEpisode: NewUnpublishEpisodeHandler(store, opts...),
		ArchiveEpisode:   NewArchiveEpisodeHandler(store, opts...),
		ProgramByID:      NewProgramByIDHandler(store, opts...),
		EpisodeByID:      NewEpisodeByIDHandler(store, opts...),
		ProgramHistory:   NewProgramHistoryHandler(store, opts...),
	}
}
