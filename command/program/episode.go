package program

import (
	"errors"
	"fmt"

	"github.com/mediamesh/mediamesh/events"
)

// NewEpisode holds a new episode's values as the command carries them. Season 0
// means the default season 1.
type NewEpisode struct {
	Title           string
	Number          int
	Season          int
	Description     string
	DurationSeconds int
	ExternalID      string
}

// EpisodeChanges holds the fields an episode update sets; a nil field is left as it is.
// Season 0 is invalid here (the default applies only when an episode is added).
type EpisodeChanges struct {
	Title           *string
	Number          *int
	Season          *int
	Description     *string
	DurationSeconds *int
}

// AddEpisode validates a new draft episode and records EpisodeAdded. The caller
// chooses the id. Input is checked first (every invalid field at once), then the
// program's state (archived: ErrInvalidState), then the episode number, which must be
// unique within its season among all of the program's episodes, archived ones
// included (ErrDuplicateEpisodeNumber).
func (p *Program) AddEpisode(id string, in NewEpisode) error {
	if id == "" {
		return errors.New("add episode: empty id")
	}
	var fe fieldErrors
	title := normTitle(&fe, in.Title)
	checkNumber(&fe, in.Number)
	season := normSeason(&fe, in.Season, true)
	checkDescription(&fe, in.Description)
	checkDuration(&fe, in.DurationSeconds)
	checkExternalID(&fe, in.ExternalID)
	if err := fe.err(); err != nil {
		return err
	}
	if p.status == StatusArchived {
		return fmt.Errorf("add episode to program %s: it is archived: %w", p.id, ErrInvalidState)
	}
	if _, taken := p.episodes[id]; taken {
		return fmt.Errorf("add episode %s to program %s: the id is already in use", id, p.id)
	}
	if err := p.checkNumberFree("", season, in.Number); err != nil {
		return err
	}
	return p.record(events.EpisodeAdded{
		ProgramID:       p.id,
		EpisodeID:       id,
		Title:           title,
		Number:          in.Number,
		Season:          season,
		Description:     in.Description,
		DurationSeconds: in.DurationSeconds,
		ExternalID:      in.ExternalID,
	})
}

// UpdateEpisode sets the given fields of an episode; only changed fields are
// recorded, and nothing when none changed. An archived episode, or any episode of an
// archived program, cannot be updated; a new season/number must be free.
func (p *Program) UpdateEpisode(id string, ch EpisodeChanges) error {
	ep, err := p.episodeOf(id)
	if err != nil {
		return err
	}
	var fe fieldErrors
	ev := events.EpisodeUpdated{ProgramID: p.id, EpisodeID: id}
	changed := false
	if ch.Title != nil {
		if t := normTitle(&fe, *ch.Title); t != ep.Title {
			ev.Title, changed = &t, true
		}
	}
	if ch.Number != nil {
		checkNumber(&fe, *ch.Number)
		if n := *ch.Number; n != ep.Number {
			ev.Number, changed = &n, true
		}
	}
	if ch.Season != nil {
		if s := normSeason(&fe, *ch.Season, false); s != ep.Season {
			ev.Season, changed = &s, true
		}
	}
	if ch.Description != nil {
		checkDescription(&fe, *ch.Description)
		if d := *ch.Description; d != ep.Description {
			ev.Description, changed = &d, true
		}
	}
	if ch.DurationSeconds != nil {
		checkDuration(&fe, *ch.DurationSeconds)
		if d := *ch.DurationSeconds; d != ep.DurationSeconds {
			ev.DurationSeconds, changed = &d, true
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	if err := p.checkEpisodeChangeable("update", ep); err != nil {
		return err
	}
	if !changed {
		return nil
	}
	if ev.Number != nil || ev.Season != nil {
		season, number := ep.Season, ep.Number
		if ev.Season != nil {
			season = *ev.Season
		}
		if ev.Number != nil {
			number = *ev.Number
		}
		if err := p.checkNumberFree(id, season, number); err != nil {
			return err
		}
	}
	return p.record(ev)
}

// PublishEpisode: draft or unpublished -> published; published records nothing;
// archived (or an archived program) -> ErrInvalidState. An episode may be published
// while its program is not: discovery shows it once the program is published.
func (p *Program) PublishEpisode(id string) error {
	ep, err := p.episodeOf(id)
	if err != nil {
		return err
	}
	if err := p.checkEpisodeChangeable("publish", ep); err != nil {
		return err
	}
	if ep.Status == StatusPublished {
		return nil
	}
	return p.record(events.EpisodePublished{ProgramID: p.id, EpisodeID: id})
}

// UnpublishEpisode: published -> unpublished; unpublished records nothing; a draft
// or archived episode (or any episode of an archived program) -> ErrInvalidState.
func (p *Program) UnpublishEpisode(id string) error {
	ep, err := p.episodeOf(id)
	if err != nil {
		return err
	}
	if err := p.checkEpisodeChangeable("unpublish", ep); err != nil {
		return err
	}
	switch ep.Status {
	case StatusUnpublished:
		return nil
	case StatusPublished:
		return p.record(events.EpisodeUnpublished{ProgramID: p.id, EpisodeID: id})
	}
	return fmt.Errorf("unpublish episode %s: it is %s: %w", id, ep.Status, ErrInvalidState)
}

// ArchiveEpisode retires an episode from any state; an archived one records nothing.
// The episode keeps holding its number. Episodes of an archived program can no longer
// change, so archiving one of them is ErrInvalidState unless it is already archived.
func (p *Program) ArchiveEpisode(id string) error {
	ep, err := p.episodeOf(id)
	if err != nil {
		return err
	}
	if ep.Status == StatusArchived {
		return nil
	}
	if err := p.checkEpisodeChangeable("archive", ep); err != nil {
		return err
	}
	return p.record(events.EpisodeArchived{ProgramID: p.id, EpisodeID: id})
}

// checkEpisodeChangeable refuses any change to an archived episode or to an episode
// of an archived program.
func (p *Program) checkEpisodeChangeable(action string, ep *Episode) error {
	if p.status == StatusArchived {
		return fmt.Errorf("%s episode %s: its program is archived: %w", action, ep.ID, ErrInvalidState)
	}
	if ep.Status == StatusArchived {
		return fmt.Errorf("%s episode %s: it is archived: %w", action, ep.ID, ErrInvalidState)
	}
	return nil
}

// checkNumberFree reports ErrDuplicateEpisodeNumber when an episode other than self
// already has number in season. Archived episodes keep their number.
func (p *Program) checkNumberFree(self string, season, number int) error {
	for _, other := range p.episodes {
		if other.ID != self && other.Season == season && other.Number == number {
			return fmt.Errorf("season %d of program %s already has episode number %d (episode %s): %w",
				season, p.id, number, other.ID, ErrDuplicateEpisodeNumber)
		}
	}
	return nil
}
